"""The built-in `local` handler (default route of COMMAND frames): one structured log line per
record; confirmation is immediate."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..spool import Row, row_to_record
from .formats import json_bytes

log = logging.getLogger("nanogridata_gateway.commands")


class LocalSink:
    def __init__(self, name: str = "local") -> None:
        self.name = name

    def encode(self, row: Row) -> bytes | None:
        return json_bytes(row_to_record(row), strict=False)  # a log line: never refuse

    async def deliver(self, fragments: Sequence[bytes], keys: Sequence[str]) -> None:
        for fragment in fragments:
            log.info("command %s", fragment.decode("utf-8", "replace"))

    async def close(self) -> None:
        return None
