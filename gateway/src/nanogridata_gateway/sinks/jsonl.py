"""`jsonl` sink: JSON records appended to a local file (debugging, audits); fsync per batch."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from ..delivery_config import SinkConfig
from ..spool import Row, row_to_record
from .base import RetryableError
from .formats import json_bytes


class JsonlSink:
    def __init__(self, config: SinkConfig) -> None:
        self.name = config.name
        self.path = config.path

    def encode(self, row: Row) -> bytes | None:
        return json_bytes(row_to_record(row))

    def _append(self, body: bytes) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "ab") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())

    async def deliver(self, fragments: Sequence[bytes], keys: Sequence[str]) -> None:
        try:
            await asyncio.to_thread(self._append, b"\n".join(fragments) + b"\n")
        except OSError as exc:
            raise RetryableError("io", f"{self.path}: {exc}") from exc

    async def close(self) -> None:
        return None
