"""Payload schema per frame type (docs/protocol.md, Schema per type)."""

from __future__ import annotations

from typing import Any

from .protocol import FrameType


class SchemaError(ValueError):
    reason = "schema"


_TELEMETRY_VALUE_TYPES = (int, float, bool, str)  # bool is an int, listed for clarity


def check_schema(frame_type: int, value: Any) -> None:
    """Raise SchemaError when `value` (a decoded payload) does not fit `frame_type`."""
    if not isinstance(value, dict):
        raise SchemaError("payload must be a map")
    for key in value:
        if not isinstance(key, str):
            raise SchemaError(f"map key {key!r} is not text")
    if frame_type == FrameType.TELEMETRY:
        for key, item in value.items():
            if not isinstance(item, _TELEMETRY_VALUE_TYPES):
                raise SchemaError(f"telemetry value of {key!r} must be a number, bool or text")
