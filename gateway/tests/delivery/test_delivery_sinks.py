"""Sinks against a real HTTP collector on loopback: format, dead letters, retry classes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import cbor2
import pytest
from prometheus_client import CollectorRegistry

from nanogridata_gateway.delivery import DeliveryStore, open_store
from nanogridata_gateway.delivery_config import parse_delivery_config
from nanogridata_gateway.records import Record
from nanogridata_gateway.sinks.base import PermanentError, RetryableError
from nanogridata_gateway.sinks.formats import influx_line, json_record
from nanogridata_gateway.sinks.http import classify_status

from conftest import Collector, delivery_raw, free_port, make_record, metric, wait_for


def _store(raw: dict[str, object]) -> tuple[DeliveryStore, CollectorRegistry]:
    registry = CollectorRegistry()
    return open_store(parse_delivery_config(raw, env={}), registry), registry


def test_json_record_format_and_idempotency_key(tmp_path: Path, collector: Collector) -> None:
    raw = delivery_raw(tmp_path, {"alba": {"type": "http_json", "url": collector.url}})
    record = make_record(
        42,
        device_id=0xBEEF,
        timestamp_ms=1_700_000_000_123,
        payload={"pressure": 1013.25, "ok": True, "note": "hi"},
    )

    async def run() -> None:
        store, _ = _store(raw)
        await store.start()
        await store.append(record)
        await wait_for(lambda: len(collector.records) == 1, 10, "the record")
        await store.close()

    asyncio.run(run())
    assert collector.records[0] == {
        "source": "nanogridata_0x10",
        "type": "TELEMETRY",
        "modelId": 0x10,
        "deviceId": 0xBEEF,
        "seq": 42,
        "timestamp": "2023-11-14T22:13:20.123Z",
        "receivedAt": collector.records[0]["receivedAt"],
        "idempotencyKey": "10-0000beef-42",
        "payload": {"pressure": 1013.25, "ok": True, "note": "hi"},
    }
    assert collector.headers[0]["Idempotency-Key"] == "10-0000beef-42"
    assert collector.headers[0]["Content-Type"] == "application/json"


def test_collector_answering_400_dead_letters_only_the_refused_records(
    tmp_path: Path, collector: Collector
) -> None:
    collector.poison_devices = {3}
    raw = delivery_raw(tmp_path, {"alba": {"type": "http_json", "url": collector.url, "batch_size": 64}})

    async def run() -> None:
        store, registry = _store(raw)
        await store.start()
        await asyncio.gather(*(store.append(make_record(seq, device_id=seq % 5)) for seq in range(500)))
        await wait_for(lambda: store.spool.record_count == 0, 30, "spool to drain")
        assert metric(registry, "nanogridata_sink_dead_letters_total", sink="alba") == 100
        assert metric(registry, "nanogridata_sink_records_delivered_total", sink="alba") == 400
        assert metric(registry, "nanogridata_sink_errors_total", sink="alba", **{"class": "http_4xx"}) > 0
        assert metric(registry, "nanogridata_sink_batches_total", sink="alba", result="dead_letter") == 100
        await store.close()

    asyncio.run(run())
    assert sorted(r["seq"] for r in collector.records) == [s for s in range(500) if s % 5 != 3]
    dead = [json.loads(line) for line in (tmp_path / "dead" / "alba.jsonl").read_text().splitlines()]
    assert sorted(d["record"]["seq"] for d in dead) == [s for s in range(500) if s % 5 == 3]
    assert all(d["reason"].startswith("HTTP 400") and d["sink"] == "alba" for d in dead)


def test_5xx_is_retried_with_backoff_until_it_succeeds(tmp_path: Path, collector: Collector) -> None:
    collector.status = 500
    raw = delivery_raw(
        tmp_path,
        {"alba": {"type": "http_json", "url": collector.url, "retry_initial_ms": 20, "retry_max_ms": 100}},
    )

    async def run() -> None:
        store, registry = _store(raw)
        await store.start()
        await asyncio.gather(*(store.append(make_record(seq)) for seq in range(200)))
        await wait_for(
            lambda: metric(registry, "nanogridata_sink_retries_total", sink="alba") >= 5, 10, "retries"
        )
        assert metric(registry, "nanogridata_spool_records") == 200
        assert metric(registry, "nanogridata_spool_oldest_record_age_seconds") > 0
        collector.status = 200
        await wait_for(lambda: store.spool.record_count == 0, 20, "spool to drain")
        assert metric(registry, "nanogridata_sink_errors_total", sink="alba", **{"class": "http_5xx"}) >= 5
        assert metric(registry, "nanogridata_sink_batches_total", sink="alba", result="retry") >= 5
        assert metric(registry, "nanogridata_sink_dead_letters_total", sink="alba") == 0
        assert metric(registry, "nanogridata_sink_last_success_timestamp_seconds", sink="alba") > 0
        await store.close()

    asyncio.run(run())
    assert sorted(r["seq"] for r in collector.records) == list(range(200))


def test_timeouts_and_refused_connections_are_classified_and_retried(
    tmp_path: Path, collector: Collector
) -> None:
    # A 1 s timeout, not less: once the delay is gone a loopback request must fit in it even on a
    # CI machine starved by the lab deploy.
    collector.delay_s = 3.0
    dead_url = f"http://127.0.0.1:{free_port()}/x"
    raw = delivery_raw(
        tmp_path,
        {
            "alba": {
                "type": "http_json",
                "url": collector.url,
                "timeout_s": 1.0,
                "retry_initial_ms": 20,
                "retry_max_ms": 50,
            },
            "cycle": {"type": "http_json", "url": dead_url, "retry_initial_ms": 20, "retry_max_ms": 50},
        },
    )

    async def run() -> None:
        store, registry = _store(raw)
        await store.start()
        await store.append(make_record(1))
        await wait_for(
            lambda: (
                metric(registry, "nanogridata_sink_errors_total", sink="alba", **{"class": "timeout"}) >= 2
            ),
            30,
            "timeouts",
        )
        await wait_for(
            lambda: (
                metric(registry, "nanogridata_sink_errors_total", sink="cycle", **{"class": "connect"}) >= 2
            ),
            10,
            "connect errors",
        )
        collector.delay_s = 0
        await wait_for(
            lambda: metric(registry, "nanogridata_sink_records_delivered_total", sink="alba") == 1,
            30,
            "delivery after the timeouts",
        )
        assert store.spool.record_count == 1  # still owed to cycle
        await store.close()

    asyncio.run(run())


@pytest.mark.parametrize("sink_type", ["http_json", "influx_line"])
@pytest.mark.parametrize("redirect", [301, 302, 303, 307, 308])
def test_a_redirecting_collector_keeps_the_records_until_a_real_2xx(
    tmp_path: Path, collector: Collector, sink_type: str, redirect: int
) -> None:
    # A followed 30x turns the POST into a GET whose 200 would confirm data nobody stored.
    collector.redirect = redirect
    sink = {"type": sink_type, "url": collector.url, "retry_initial_ms": 20, "retry_max_ms": 50}
    raw = delivery_raw(tmp_path, {"alba": sink})

    async def run() -> None:
        store, registry = _store(raw)
        await store.start()
        await asyncio.gather(*(store.append(make_record(seq)) for seq in range(20)))
        errors = {"sink": "alba", "class": "http_3xx"}
        await wait_for(lambda: metric(registry, "nanogridata_sink_errors_total", **errors) >= 3, 20, "3xx")
        assert store.spool.record_count == 20
        assert metric(registry, "nanogridata_sink_records_delivered_total", sink="alba") == 0
        assert collector.gets == 0
        collector.redirect = None
        await wait_for(lambda: store.spool.record_count == 0, 30, "spool to drain")
        assert metric(registry, "nanogridata_sink_records_delivered_total", sink="alba") == 20
        await store.close()

    asyncio.run(run())
    assert len(collector.records) + len(collector.lines) == 20


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (204, None),
        (301, "http_3xx"),
        (304, "http_3xx"),
        (308, "http_3xx"),
        (400, "permanent"),
        (404, "permanent"),
        (408, "http_4xx"),
        (429, "http_4xx"),
        (500, "http_5xx"),
        (503, "http_5xx"),
        (102, "http_other"),
        (600, "http_other"),
    ],
)
def test_every_status_is_classified_and_only_2xx_is_delivered(status: int, expected: str | None) -> None:
    error = classify_status(status, "detail", "http://elsewhere/x")
    if expected is None:
        assert error is None
    elif expected == "permanent":
        assert isinstance(error, PermanentError) and error.status == status
    else:
        assert isinstance(error, RetryableError) and error.error_class == expected
    if expected == "http_3xx":
        assert "http://elsewhere/x" in str(error)


def test_influx_line_protocol() -> None:
    record = Record(
        0x20,
        0x01,
        77,
        5,
        1_700_000_000_123,
        1_700_000_000_200,
        cbor2.dumps({"co2 ppm": 412, "t,c": 21.5, "ok": False, "name": "x", "nested": {"a": 1}}),
    )
    assert influx_line(record, "nanogridata") == (
        b"nanogridata_0x20,device=77,model=0x20 co2\\ ppm=412.0,t\\,c=21.5,ok=false 1700000000123000000"
    )
    with_text = influx_line(record, "nanogridata", text_fields=True)
    assert with_text is not None and b'name="x"' in with_text
    event = Record(0x20, 0x02, 77, 6, 1, 1, cbor2.dumps({"code": 7}))
    assert influx_line(event, "ng") == b"ng_0x20,device=77,model=0x20,type=EVENT code=7.0 1000000"
    assert influx_line(Record(0x20, 0x01, 1, 1, 1, 1, cbor2.dumps([1, 2])), "ng") is None
    assert influx_line(Record(0x20, 0x01, 1, 1, 1, 1, cbor2.dumps({"s": "text"})), "ng") is None


def test_json_record_keeps_byte_strings_as_base64() -> None:
    record = Record(0x30, 0x02, 9, 1, 1_000, 2_000, cbor2.dumps({"blob": b"\x00\xff"}))
    assert json_record(record)["payload"] == {"blob": "AP8="}
    assert json_record(record)["type"] == "EVENT"
