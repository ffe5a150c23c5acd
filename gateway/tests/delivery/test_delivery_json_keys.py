"""The JSON record never merges CBOR map keys: integer, text and byte-string keys that would become
the same JSON key make the record refused (dead-lettered with its raw CBOR), never silently lose a
value."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from nanogridata_gateway.delivery import open_store
from nanogridata_gateway.delivery_config import parse_delivery_config
from nanogridata_gateway.records import Record
from nanogridata_gateway.sinks.formats import KeyCollision, json_record

from conftest import Collector, delivery_raw, make_record, metric, wait_for


def expected_key(key: Any) -> str:
    """The documented mapping (docs/delivery.md): text as is, integers in decimal, byte strings
    in base64."""
    if isinstance(key, bytes):
        return base64.b64encode(key).decode("ascii")
    return key if isinstance(key, str) else str(key)


def has_collision(value: Any) -> bool:
    if isinstance(value, dict):
        names = [expected_key(k) for k in value]
        return len(set(names)) < len(names) or any(has_collision(v) for v in value.values())
    if isinstance(value, list):
        return any(has_collision(v) for v in value)
    return False


def same(original: Any, exported: Any) -> bool:
    """`exported` (the JSON payload) holds every key and value of `original` (the CBOR payload)."""
    if isinstance(original, dict):
        return (
            isinstance(exported, dict)
            and len(exported) == len(original)
            and all(same(v, exported.get(expected_key(k), object())) for k, v in original.items())
        )
    if isinstance(original, list):
        return (
            isinstance(exported, list)
            and len(exported) == len(original)
            and all(same(a, b) for a, b in zip(original, exported, strict=True))
        )
    if isinstance(original, bytes):
        return exported == base64.b64encode(original).decode("ascii")
    return type(exported) is type(original) and exported == original


# Small key domains so that "1", 1 and b"\xd7" (base64 "1w==") and friends collide often.
KEYS = st.one_of(
    st.integers(-3, 20),
    st.text(alphabet="0123456789-w=AB", max_size=4),
    st.binary(max_size=3),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.binary(max_size=8),
)
PAYLOADS = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=20,
)


def _record(payload: Any) -> Record:
    return Record(0x10, 0x01, 7, 1, 1_700_000_000_000, 1_700_000_000_001, cbor2.dumps(payload))


@settings(max_examples=400, deadline=None)
@given(PAYLOADS)
def test_json_record_never_loses_a_key_or_a_value(payload: Any) -> None:
    record = _record(payload)
    try:
        exported = json_record(record)["payload"]
    except KeyCollision:
        assert has_collision(payload)
    else:
        assert not has_collision(payload)
        assert same(payload, json.loads(json.dumps(exported)))
    # The lenient form (dead letters) always keeps the payload, byte for byte when it must.
    lenient = json_record(record, strict=False)["payload"]
    if has_collision(payload):
        assert lenient == {"cbor_base64": base64.b64encode(record.payload).decode("ascii")}
    else:
        assert same(payload, lenient)


def test_the_reported_collision_is_refused_not_merged() -> None:
    record = _record({1: "a", "1": "b", b"1": "c"})
    with pytest.raises(KeyCollision, match="'1'"):
        json_record(record)
    # byte strings as keys become base64, like byte-string values: no collision with "1"
    assert json_record(_record({1: "a", b"1": "c"}))["payload"] == {"1": "a", "MQ==": "c"}


@pytest.mark.parametrize("sink_type", ["http_json", "jsonl"])
def test_a_colliding_record_is_dead_lettered_with_its_raw_payload(
    tmp_path: Path, collector: Collector, sink_type: str
) -> None:
    if sink_type == "http_json":
        sink: dict[str, object] = {"type": "http_json", "url": collector.url}
    else:
        sink = {"type": "jsonl", "path": str(tmp_path / "out.jsonl")}
    raw = delivery_raw(tmp_path, {"alba": sink})
    colliding = make_record(1, payload={1: "a", "1": "b"})  # type: ignore[dict-item]

    async def run() -> None:
        registry = CollectorRegistry()
        store = open_store(parse_delivery_config(raw, env={}), registry)
        await store.start()
        await store.append(colliding)
        await store.append(make_record(2))
        await wait_for(lambda: store.spool.record_count == 0, 30, "spool to drain")
        assert metric(registry, "nanogridata_sink_dead_letters_total", sink="alba") == 1
        assert metric(registry, "nanogridata_sink_records_delivered_total", sink="alba") == 1
        await store.close()

    asyncio.run(run())
    dead = [json.loads(line) for line in (tmp_path / "dead" / "alba.jsonl").read_text().splitlines()]
    assert len(dead) == 1 and dead[0]["record"]["seq"] == 1
    assert "'1'" in dead[0]["reason"] and "JSON key" in dead[0]["reason"]
    assert base64.b64decode(dead[0]["record"]["payload"]["cbor_base64"]) == colliding.payload
    if sink_type == "http_json":
        delivered = [r["seq"] for r in collector.records]
    else:
        delivered = [json.loads(line)["seq"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert delivered == [2]
