"""`influx_line` sink: InfluxDB line protocol POSTed to VictoriaMetrics `/write` or InfluxDB 1.x
`/write?db=NAME`. Timestamps are the frames' own (ns), so a re-sent batch writes identical points:
InfluxDB overwrites them, VictoriaMetrics collapses them when run with -dedup.minScrapeInterval."""

from __future__ import annotations

from collections.abc import Sequence

from ..delivery_config import SinkConfig
from ..spool import Row
from .formats import influx_line_row
from .http import HttpPoster


class InfluxLineSink:
    def __init__(self, config: SinkConfig) -> None:
        self.name = config.name
        self._prefix = config.measurement_prefix
        self._text_fields = config.text_fields
        self._poster = HttpPoster(config, "text/plain; charset=utf-8")

    def encode(self, row: Row) -> bytes | None:
        return influx_line_row(row, self._prefix, self._text_fields)

    async def deliver(self, fragments: Sequence[bytes], keys: Sequence[str]) -> None:
        await self._poster.post(b"\n".join(fragments) + b"\n")

    async def close(self) -> None:
        await self._poster.close()
