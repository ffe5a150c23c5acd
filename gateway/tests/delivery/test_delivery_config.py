"""parse_delivery_config: defaults, routes, and errors that name the key and the expected form."""

from __future__ import annotations

from typing import Any

import pytest

from nanogridata_gateway.delivery_config import PAIR_SECRET_ENV, parse_delivery_config
from nanogridata_gateway.errors import ConfigError

SINKS: dict[str, Any] = {
    "alba": {"type": "http_json", "url": "http://127.0.0.1:5555/telemetry/ingest"},
    "cycle": {"type": "jsonl", "path": "/tmp/cycle.jsonl"},
    "vm": {"type": "influx_line", "url": "http://127.0.0.1:8428/write", "batch_size": 5000},
}
# as `nanogridata-gateway keygen` makes them: the loader refuses patterns like "ab" * 32
SECRET = "85ef61e36deb0d3194c19ec72b96e8d7e527a6f6260d5618986c677d59c188ea"


def test_defaults_route_like_the_original_design() -> None:
    config = parse_delivery_config({"sinks": SINKS}, env={})
    assert config.sinks_for(0x01, 0x10) == ("alba",)
    assert config.sinks_for(0x02, 0x30) == ("alba",)
    assert config.sinks_for(0x03, 0x10) == ("cycle",)
    assert config.sinks_for(0x04, 0x10) == ("local",)
    assert config.spool.max_bytes == 1 << 30
    assert config.spool.max_age_s == 72 * 3600
    assert config.sinks["alba"].timeout_s == 2.0
    assert config.sinks["vm"].batch_size == 5000
    assert config.peer is None


def test_model_specific_route_wins() -> None:
    routes = {
        "TELEMETRY": ["alba"],
        "TELEMETRY.0x20": ["vm", "alba"],
        "EVENT": "alba",
        "CONFIG": ["cycle"],
        "COMMAND": ["local"],
    }
    config = parse_delivery_config({"sinks": SINKS, "routes": routes}, env={})
    assert config.sinks_for(0x01, 0x20) == ("vm", "alba")
    assert config.sinks_for(0x01, 0x10) == ("alba",)
    assert config.sinks_for(0x02, 0x20) == ("alba",)


def test_sizes_and_peer_secret_from_env() -> None:
    raw = {
        "sinks": SINKS,
        "spool": {"max_bytes": "512MiB", "max_age_hours": 24},
        "peer": {"url": "http://10.0.0.2:5681", "listen": "10.0.0.1:5681"},
    }
    config = parse_delivery_config(raw, env={PAIR_SECRET_ENV: SECRET})
    assert config.spool.max_bytes == 512 * 2**20
    assert config.spool.max_age_s == 24 * 3600
    assert config.peer is not None
    assert config.peer.secret == bytes.fromhex(SECRET)
    assert (config.peer.listen_host, config.peer.listen_port) == ("10.0.0.1", 5681)


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        ({"spool": {"pth": "/x"}}, "spool.pth", "one of"),
        ({"spool": {"max_bytes": "lots"}}, "spool.max_bytes", "1GiB"),
        ({"spool": {"commit_interval_ms": -1}}, "spool.commit_interval_ms", "number from"),
        ({"sinks": SINKS, "spool": {"drop_sinks": "old"}}, "spool.drop_sinks", "list of sink names"),
        ({"sinks": SINKS, "spool": {"drop_sinks": ["alba"]}}, "spool.drop_sinks", "only sinks removed"),
        ({"sinks": SINKS, "spool": {"drop_sinks": ["local"]}}, "spool.drop_sinks", "only sinks removed"),
        ({"sinks": {**SINKS, "x": {"type": "kafka"}}}, "sinks.x.type", "http_json"),
        (
            {"sinks": {**SINKS, "x": {"type": "http_json", "url": "ftp://a"}}},
            "sinks.x.url",
            "http://host:port/path",
        ),
        ({"sinks": {**SINKS, "x": {"type": "jsonl"}}}, "sinks.x.path", "a string"),
        (
            {"sinks": {**SINKS, "x": {"type": "jsonl", "path": "/a", "url": "http://a"}}},
            "sinks.x.url",
            "one of",
        ),
        (
            {"sinks": {**SINKS, "x": {"type": "http_json", "url": "http://a", "concurrency": 0}}},
            "sinks.x.concurrency",
            "integer from 1",
        ),
        ({"sinks": {**SINKS, "local": {"type": "jsonl", "path": "/a"}}}, "sinks.local", "built in"),
        ({"sinks": {"alba": SINKS["alba"]}}, "routes.CONFIG", "define the sink"),
        ({"sinks": SINKS, "routes": {"TELEMETRY": ["nope"]}}, "routes.TELEMETRY", "[sinks]"),
        ({"sinks": SINKS, "routes": {"TELEMETRY": ["alba"]}}, "routes.EVENT", "silent drop"),
        ({"sinks": SINKS, "routes": {"GOSSIP": ["alba"]}}, "routes.GOSSIP", "TELEMETRY"),
        ({"sinks": SINKS, "routes": {"TELEMETRY.0x100": ["alba"]}}, "routes.TELEMETRY.0x100", "0..255"),
        ({"sinks": SINKS, "routes": {"TELEMETRY": []}}, "routes.TELEMETRY", "non-empty list"),
        ({"sinks": SINKS, "peer": {"url": "http://a:1", "listen": "b:2"}}, "peer.secret", "hex"),
        (
            {"sinks": SINKS, "peer": {"url": "http://a:1", "listen": "b:2", "secret": "abcd"}},
            "peer.secret",
            "64 hex digits",
        ),
        (
            {"sinks": SINKS, "peer": {"url": "http://a:1", "listen": "b", "secret": SECRET}},
            "peer.listen",
            "host:port",
        ),
        (
            {"sinks": SINKS, "peer": {"url": "http://a:1", "listen": "b:²", "secret": SECRET}},
            "peer.listen",
            "host:port",
        ),
        (
            {"sinks": SINKS, "peer": {"url": "http://a:1", "listen": "b:2", "secret": "00" * 32}},
            "peer.secret",
            "keygen",
        ),
        (
            {
                "sinks": SINKS,
                "peer": {"url": "http://a:1", "listen": "b:2", "secret": SECRET, "node_name": "gw ä"},
            },
            "peer.node_name",
            "A-Z a-z 0-9",
        ),
        ({"sinks": SINKS, "spool": {"max_bytes": "9" * 400}}, "spool.max_bytes", "1GiB"),
        ({"sinks": SINKS, "spool": {"max_bytes": "1e3GiB"}}, "spool.max_bytes", "1GiB"),
        ({"sinks": SINKS, "routes": {"TELEMETRY": [{"a": 1}]}}, "routes.TELEMETRY", "sink names"),
        (
            {"sinks": {**SINKS, "x": {"type": "http_json", "url": "http://[::1"}}},
            "sinks.x.url",
            "http://host:port/path",
        ),
        (
            {
                "sinks": {
                    **SINKS,
                    "x": {"type": "http_json", "url": "http://a/", "headers": {"X-A": "1\r\nX-B: 2"}},
                }
            },
            "sinks.x.headers.X-A",
            "without control characters",
        ),
        (
            {"sinks": {**SINKS, "x": {"type": "http_json", "url": "http://a/", "headers": {"X A": "1"}}}},
            "sinks.x.headers.X A",
            "letters, digits",
        ),
    ],
)
def test_errors_name_the_key_and_the_expected_form(raw: dict[str, Any], key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_delivery_config(raw, env={})
    assert info.value.key == key
    assert expected in str(info.value)
