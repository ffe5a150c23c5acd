"""`http_json` sink: JSON records POSTed to a collector, as one JSON array per batch (default)
or newline-delimited JSON. Each record carries its idempotency key as a field; the request carries
it as the `Idempotency-Key` header (for a multi-record batch: a digest of the batch's keys)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ..delivery_config import SinkConfig
from ..spool import Row, row_to_record
from .formats import json_bytes
from .http import HttpPoster


class HttpJsonSink:
    def __init__(self, config: SinkConfig) -> None:
        self.name = config.name
        self._array = config.json_format == "array"
        content_type = "application/json" if self._array else "application/x-ndjson"
        self._poster = HttpPoster(config, content_type)

    def encode(self, row: Row) -> bytes | None:
        return json_bytes(row_to_record(row))

    async def deliver(self, fragments: Sequence[bytes], keys: Sequence[str]) -> None:
        body = b"[" + b",".join(fragments) + b"]" if self._array else b"\n".join(fragments) + b"\n"
        if len(keys) == 1:
            key = keys[0]
        else:
            key = "batch-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]
        await self._poster.post(body, {"Idempotency-Key": key})

    async def close(self) -> None:
        await self._poster.close()
