"""The seam between ingest (codec, verifier, server) and delivery (spool, sinks, peer sync).

The server hands every authentic, valid frame to a `Store` as a `Record` and sends ACK OK only
after `Store.append` returned: that return is the durability promise made to the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Record:
    """One accepted frame, as stored and forwarded."""

    model_id: int
    frame_type: int
    device_id: int
    seq: int
    timestamp_ms: int  # the device's time; the gateway's receive time when the device sent 0
    received_ms: int  # gateway receive time (ms since the Unix epoch, UTC)
    payload: bytes  # the frame's CBOR payload, already decoded once and validated

    @property
    def idempotency_key(self) -> str:
        """Stable across retransmissions and across both gateways of the pair."""
        return f"{self.model_id:02x}-{self.device_id:08x}-{self.seq}"


class StoreFull(Exception):
    """The spool is at its byte or age limit: the device gets BUSY and keeps its frame."""


class Store(Protocol):
    """Durable acceptance of records (implemented by the delivery spool)."""

    async def start(self) -> None: ...

    async def append(self, record: Record) -> None:
        """Return once `record` is durable (group commit); raise StoreFull when full."""
        ...

    def is_ready(self) -> bool:
        """True when append() would store (not full, disk writable)."""
        ...

    async def close(self) -> None:
        """Flush, stop background work (sinks, peer sync), release files."""
        ...


class ReplayGuard(Protocol):
    """Per-device replay window (owned by ingest); peer sync marks what the peer accepted."""

    def seen(self, model_id: int, device_id: int, seq: int) -> bool: ...

    def mark(self, model_id: int, device_id: int, seq: int) -> None: ...
