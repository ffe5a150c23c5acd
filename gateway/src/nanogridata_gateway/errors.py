"""Errors shared across the gateway package."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration value is missing or wrong. Names the key and the expected form."""

    def __init__(self, key: str, problem: str, expected: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.expected = expected
        message = f"{key}: {problem}"
        if expected:
            message += f" (expected {expected})"
        super().__init__(message)
