"""Delivery sinks: http_json, influx_line, jsonl and the built-in local handler."""

from __future__ import annotations

from ..delivery_config import LOCAL_SINK, SinkConfig
from .base import Sink
from .http_json import HttpJsonSink
from .influx_line import InfluxLineSink
from .jsonl import JsonlSink
from .local import LocalSink


def build_sink(name: str, config: SinkConfig | None) -> Sink:
    if name == LOCAL_SINK or config is None:
        return LocalSink(name)
    if config.type == "http_json":
        return HttpJsonSink(config)
    if config.type == "influx_line":
        return InfluxLineSink(config)
    if config.type == "jsonl":
        return JsonlSink(config)
    raise ValueError(f"unknown sink type {config.type!r}")


__all__ = ["Sink", "build_sink"]
