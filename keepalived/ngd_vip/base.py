"""The one small interface every VIP provider hook implements, and the shared error types."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class ConfigError(Exception):
    """Bad or missing configuration. The message names the key and the fix."""


class ProviderError(Exception):
    """The cloud could not be made to route the VIP here (after the retries allowed)."""


class SupersededError(ProviderError):
    """keepalived left MASTER while we were still moving the IP: stop, the new state wins."""


class Provider(Protocol):
    """What notify.py needs from a provider. Implementations must be idempotent."""

    name: str

    def take_over(self, still_master: Callable[[], bool]) -> None:
        """Make the network deliver the VIP to this node (called on MASTER).

        ``still_master`` is consulted before every cloud change: when it turns False the
        provider raises :class:`SupersededError` instead of stealing the IP back."""

    def routed_here(self) -> bool:
        """For reconcile: does the network deliver the VIP to this node right now?"""


class Deadline:
    """A bounded time budget shared by every API call of one operation."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.start = clock()
        self.end = self.start + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - self.clock())

    def elapsed(self) -> float:
        return self.clock() - self.start

    def expired(self) -> bool:
        return self.remaining() <= 0.0
