"""Delivery sinks: http_json, influx_line, jsonl and the built-in local handler."""

from __future__ import annotations

from ..delivery_config import LOCAL_SINK, SinkConfig
from .base import Sink
from .local import LocalSink

# Each sink type's module is imported when a configured sink needs it: the HTTP sinks bring
# aiohttp, megabytes of resident memory that a gateway delivering only to files never uses
# (hence the imports inside build_sink).


def build_sink(name: str, config: SinkConfig | None) -> Sink:
    if name == LOCAL_SINK or config is None:
        return LocalSink(name)
    if config.type == "http_json":
        from .http_json import HttpJsonSink  # noqa: PLC0415

        return HttpJsonSink(config)
    if config.type == "influx_line":
        from .influx_line import InfluxLineSink  # noqa: PLC0415

        return InfluxLineSink(config)
    if config.type == "jsonl":
        from .jsonl import JsonlSink  # noqa: PLC0415

        return JsonlSink(config)
    raise ValueError(f"unknown sink type {config.type!r}")


__all__ = ["Sink", "build_sink"]
