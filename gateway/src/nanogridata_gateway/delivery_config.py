"""Delivery configuration: the `spool`, `sinks`, `routes` and `peer` sections of the gateway TOML.

`parse_delivery_config` validates the raw (already TOML-decoded) sections and returns frozen
dataclasses. Every error is a `ConfigError` naming the offending key and the expected form.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config_readers import (
    parse_model_id,
    parse_secret_hex,
    parse_size,
    read_float,
    read_http_url,
    read_int,
    read_str,
    read_table,
    reject_unknown,
)
from .errors import ConfigError
from .keys import MIN_MASTER_SECRET_BYTES
from .protocol import FRAME_TYPES

SINK_TYPES = ("http_json", "influx_line", "jsonl")
# The built-in local handler (COMMAND frames): logs the record and counts it; needs no config.
LOCAL_SINK = "local"

DEFAULT_ROUTES: dict[str, tuple[str, ...]] = {
    "TELEMETRY": ("alba",),
    "EVENT": ("alba",),
    "CONFIG": ("cycle",),
    "COMMAND": (LOCAL_SINK,),
}

PAIR_SECRET_ENV = "NANOGRIDATA_PAIR_SECRET"
# One bit per sink in the spool's routing mask (SQLite INTEGER is 64-bit signed).
MAX_SINKS = 62

_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# peer.node_name travels in an HTTP header and peer_name is a metric label: ASCII, bounded
NODE_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# an HTTP header name is an RFC 9110 token; a value must not break the request (no CR, LF, NUL)
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_HEADER_VALUE_RE = re.compile(r"[\t\x20-\x7e\x80-\U0010ffff]{0,8192}")


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    path: str = "/var/lib/nanogridata/spool.db"
    max_bytes: int = 1 << 30
    max_age_s: float = 72 * 3600.0
    # Minimum spacing between two group commits; 0: commit as soon as the previous one finished
    # (one fsync in flight, the next group forms meanwhile: docs/delivery.md, "Group commit").
    commit_interval_ms: float = 0.0
    max_commit_records: int = 20_000
    dead_letter_dir: str = "/var/lib/nanogridata/dead-letters"
    # Sinks no longer configured whose spooled records the operator chose to delete (a sink that
    # disappears while it still owes records otherwise refuses the start: docs/delivery.md).
    drop_sinks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SinkConfig:
    name: str
    type: str
    url: str = ""  # http_json, influx_line
    path: str = ""  # jsonl
    batch_size: int = 500
    batch_interval_ms: float = 50.0
    concurrency: int = 4
    timeout_s: float = 2.0
    retry_initial_ms: float = 100.0
    retry_max_ms: float = 30_000.0
    json_format: str = "array"  # http_json: "array" (one JSON array per batch) or "ndjson"
    headers: tuple[tuple[str, str], ...] = ()
    measurement_prefix: str = "nanogridata"  # influx_line: measurement = <prefix>_0x<model>
    # influx_line: write text values as string fields (InfluxDB keeps them; VictoriaMetrics
    # would turn each into a bogus series of zeros, hence off by default)
    text_fields: bool = False


@dataclass(frozen=True, slots=True)
class PeerConfig:
    url: str  # the peer's sync endpoint base, e.g. http://10.10.0.12:5681
    listen_host: str
    listen_port: int
    secret: bytes = field(repr=False)
    node_name: str = "gateway"
    peer_name: str = "peer"
    batch_interval_ms: float = 200.0
    max_batch: int = 10_000
    timeout_s: float = 2.0
    max_queue: int = 1_000_000


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    spool: SpoolConfig
    sinks: Mapping[str, SinkConfig]
    # (frame type, model id or None for "any model") -> sink names
    routes: Mapping[tuple[int, int | None], tuple[str, ...]]
    peer: PeerConfig | None = None

    def sinks_for(self, frame_type: int, model_id: int) -> tuple[str, ...]:
        """Route lookup: a model-specific route wins over the type's route."""
        return self.routes.get((frame_type, model_id)) or self.routes.get((frame_type, None), ())


# --- sections ------------------------------------------------------------------------------


def _parse_spool(raw: Any) -> SpoolConfig:
    t = read_table(raw, "spool")
    reject_unknown(
        t,
        "spool",
        {
            "path",
            "max_bytes",
            "max_age_hours",
            "commit_interval_ms",
            "max_commit_records",
            "dead_letter_dir",
            "drop_sinks",
        },
    )
    d = SpoolConfig()
    return SpoolConfig(
        path=read_str(t, "spool", "path", d.path),
        max_bytes=parse_size(t.get("max_bytes", d.max_bytes), "spool.max_bytes"),
        max_age_s=read_float(t, "spool", "max_age_hours", d.max_age_s / 3600, 0.001, 24 * 365) * 3600,
        commit_interval_ms=read_float(t, "spool", "commit_interval_ms", d.commit_interval_ms, 0, 1000),
        max_commit_records=read_int(t, "spool", "max_commit_records", d.max_commit_records, 1, 10**6),
        dead_letter_dir=read_str(t, "spool", "dead_letter_dir", d.dead_letter_dir),
        drop_sinks=_drop_sinks(t.get("drop_sinks", [])),
    )


def _drop_sinks(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and _NAME_RE.match(v) for v in value):
        raise ConfigError("spool.drop_sinks", f"bad value {value!r}", 'a list of sink names, e.g. ["old"]')
    return tuple(value)


_SINK_COMMON = {
    "type",
    "batch_size",
    "batch_interval_ms",
    "concurrency",
    "timeout_s",
    "retry_initial_ms",
    "retry_max_ms",
}
_SINK_KEYS = {
    "http_json": _SINK_COMMON | {"url", "format", "headers"},
    "influx_line": _SINK_COMMON | {"url", "measurement_prefix", "headers", "text_fields"},
    "jsonl": _SINK_COMMON | {"path"},
}


def _parse_sink(name: str, raw: Any) -> SinkConfig:
    key = f"sinks.{name}"
    if not _NAME_RE.match(name) or name == LOCAL_SINK:
        raise ConfigError(
            key,
            f"bad sink name {name!r}",
            f"lower-case letters, digits, '_' or '-', not {LOCAL_SINK!r} (built in)",
        )
    t = read_table(raw, key)
    kind = t.get("type")
    if kind not in SINK_TYPES:
        raise ConfigError(f"{key}.type", f"bad value {kind!r}", " | ".join(SINK_TYPES))
    reject_unknown(t, key, _SINK_KEYS[kind])
    d = SinkConfig(name=name, type=kind)
    headers: tuple[tuple[str, str], ...] = ()
    if "headers" in t:
        h = read_table(t["headers"], f"{key}.headers")
        for hk, hv in h.items():
            if not _HEADER_NAME_RE.fullmatch(str(hk)):
                raise ConfigError(
                    f"{key}.headers.{hk}", "bad header name", "letters, digits and !#$%&'*+.^_`|~-"
                )
            if not isinstance(hv, str) or not _HEADER_VALUE_RE.fullmatch(hv):
                raise ConfigError(
                    f"{key}.headers.{hk}",
                    f"bad value {hv!r}",
                    "a string of at most 8192 characters without control characters",
                )
        headers = tuple((str(hk), str(hv)) for hk, hv in h.items())
    json_format = d.json_format
    if kind == "http_json":
        json_format = t.get("format", d.json_format)
        if json_format not in ("array", "ndjson"):
            raise ConfigError(f"{key}.format", f"bad value {json_format!r}", '"array" | "ndjson"')
    prefix = d.measurement_prefix
    if kind == "influx_line":
        prefix = read_str(t, key, "measurement_prefix", d.measurement_prefix)
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", prefix):
            raise ConfigError(
                f"{key}.measurement_prefix",
                f"bad value {prefix!r}",
                "letters, digits and '_' (a metric-name prefix)",
            )
    text_fields = t.get("text_fields", False)
    if not isinstance(text_fields, bool):
        raise ConfigError(f"{key}.text_fields", f"bad value {text_fields!r}", "true | false")
    retry_initial = read_float(t, key, "retry_initial_ms", d.retry_initial_ms, 1, 600_000)
    retry_max = read_float(t, key, "retry_max_ms", d.retry_max_ms, 1, 3_600_000)
    if retry_max < retry_initial:
        raise ConfigError(
            f"{key}.retry_max_ms",
            f"{retry_max:g} < retry_initial_ms",
            "retry_max_ms >= retry_initial_ms",
        )
    return SinkConfig(
        name=name,
        type=kind,
        url=read_http_url(t, key, "url") if kind != "jsonl" else "",
        path=read_str(t, key, "path", None) if kind == "jsonl" else "",
        batch_size=read_int(t, key, "batch_size", d.batch_size, 1, 100_000),
        batch_interval_ms=read_float(t, key, "batch_interval_ms", d.batch_interval_ms, 0, 60_000),
        concurrency=read_int(t, key, "concurrency", d.concurrency, 1, 64),
        timeout_s=read_float(t, key, "timeout_s", d.timeout_s, 0.01, 600),
        retry_initial_ms=retry_initial,
        retry_max_ms=retry_max,
        json_format=json_format,
        headers=headers,
        measurement_prefix=prefix,
        text_fields=text_fields,
    )


def _parse_routes(raw: Any, sinks: Mapping[str, SinkConfig]) -> dict[tuple[int, int | None], tuple[str, ...]]:
    given = raw is not None
    table: Mapping[str, Any] = read_table(raw, "routes") if given else DEFAULT_ROUTES
    routes: dict[tuple[int, int | None], tuple[str, ...]] = {}
    for route_key, targets in table.items():
        key = f"routes.{route_key}"
        type_name, _, model_text = str(route_key).partition(".")
        if type_name not in FRAME_TYPES:
            raise ConfigError(
                key,
                f"unknown payload type {type_name!r}",
                'TYPE or "TYPE.MODEL" with TYPE one of ' + ", ".join(FRAME_TYPES),
            )
        model = parse_model_id(model_text, key, '"TELEMETRY.0x20"') if model_text else None
        if isinstance(targets, str):
            targets = [targets]  # noqa: PLW2901 - a single name is accepted for a list of one
        if (
            not isinstance(targets, (list, tuple))
            or not targets
            or not all(isinstance(target, str) for target in targets)
        ):
            raise ConfigError(key, f"bad value {targets!r}", "a non-empty list of sink names")
        for target in targets:
            if target != LOCAL_SINK and target not in sinks:
                hint = "" if given else " (default route; define the sink or set [routes])"
                raise ConfigError(
                    key,
                    f"names unknown sink {target!r}{hint}",
                    'a sink defined under [sinks] or "local"',
                )
        if len(set(targets)) != len(targets):
            raise ConfigError(key, f"repeats a sink in {targets!r}", "each sink at most once")
        routes[(FRAME_TYPES[type_name], model)] = tuple(targets)
    for type_name, type_id in FRAME_TYPES.items():
        if (type_id, None) not in routes:
            raise ConfigError(
                f"routes.{type_name}",
                "missing: frames of this type would have no sink",
                f'{type_name} = ["<sink>", ...] (never a silent drop)',
            )
    return routes


def _parse_listen(value: Any, key: str) -> tuple[str, int]:
    if isinstance(value, str) and value.isascii():
        host, sep, port_text = value.rpartition(":")
        # str.isdigit accepts digits that int() refuses ("²"): ASCII digits only, at most 5
        if sep and host and re.fullmatch(r"[0-9]{1,5}", port_text) and 0 < int(port_text) < 65536:
            return host.strip("[]"), int(port_text)
    raise ConfigError(key, f"bad value {value!r}", '"host:port", e.g. "10.10.0.11:5681"')


def _node_name(table: Mapping[str, Any], name: str, default: str) -> str:
    value = read_str(table, "peer", name, default)
    if not NODE_NAME_RE.fullmatch(value):
        raise ConfigError(f"peer.{name}", f"bad value {value!r}", "1 to 64 of A-Z a-z 0-9 . _ -")
    return value


def _parse_peer(raw: Any, env: Mapping[str, str]) -> PeerConfig | None:
    if raw is None:
        return None
    t = read_table(raw, "peer")
    reject_unknown(
        t,
        "peer",
        {
            "url",
            "listen",
            "secret",
            "node_name",
            "peer_name",
            "batch_interval_ms",
            "max_batch",
            "timeout_s",
            "max_queue",
        },
    )
    secret_hex = t.get("secret", env.get(PAIR_SECRET_ENV))
    if secret_hex is None:
        raise ConfigError(
            "peer.secret",
            f"missing (secrets file key peer.secret or ${PAIR_SECRET_ENV})",
            f"at least {MIN_MASTER_SECRET_BYTES} random bytes as hex",
        )
    secret = parse_secret_hex(secret_hex, "peer.secret")
    host, port = _parse_listen(t.get("listen"), "peer.listen")
    return PeerConfig(
        url=read_http_url(t, "peer", "url").rstrip("/"),
        listen_host=host,
        listen_port=port,
        secret=secret,
        node_name=_node_name(t, "node_name", "gateway"),
        peer_name=_node_name(t, "peer_name", "peer"),
        batch_interval_ms=read_float(t, "peer", "batch_interval_ms", 200.0, 1, 1000),
        max_batch=read_int(t, "peer", "max_batch", 10_000, 1, 1_000_000),
        timeout_s=read_float(t, "peer", "timeout_s", 2.0, 0.01, 60),
        max_queue=read_int(t, "peer", "max_queue", 1_000_000, 1, 100_000_000),
    )


def parse_delivery_config(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> DeliveryConfig:
    """Validate the delivery sections of the gateway config.

    `raw` may hold other sections too (the core's); only `spool`, `sinks`, `routes` and `peer`
    are read. `env` defaults to os.environ (for the pair secret).
    """
    env = os.environ if env is None else env
    spool = _parse_spool(raw.get("spool", {}))
    sinks_raw = read_table(raw.get("sinks", {}), "sinks")
    if len(sinks_raw) > MAX_SINKS:
        raise ConfigError("sinks", f"{len(sinks_raw)} sinks", f"at most {MAX_SINKS}")
    sinks = {name: _parse_sink(name, cfg) for name, cfg in sinks_raw.items()}
    routes = _parse_routes(raw.get("routes"), sinks)
    for name in spool.drop_sinks:
        if name in sinks or name == LOCAL_SINK:
            raise ConfigError(
                "spool.drop_sinks",
                f"names {name!r}, which is configured (dropping would delete records it still delivers)",
                "only sinks removed from [sinks]",
            )
    peer = _parse_peer(raw.get("peer"), env)
    return DeliveryConfig(spool=spool, sinks=sinks, routes=routes, peer=peer)
