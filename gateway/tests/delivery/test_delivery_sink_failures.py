"""A sink worker never abandons a batch: a dead-letter file it cannot write, or any other failure
while a batch is processed, keeps the records in the spool (nothing confirmed past them), is
counted and retried, and the sink carries on once the cause is gone."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from nanogridata_gateway.delivery import DeliveryStore, open_store
from nanogridata_gateway.delivery_config import parse_delivery_config
from nanogridata_gateway.sinks.base import DeadLetters
from nanogridata_gateway.spool import Row

from conftest import Collector, delivery_raw, make_record, metric, wait_for


def _store(raw: dict[str, object]) -> tuple[DeliveryStore, CollectorRegistry]:
    registry = CollectorRegistry()
    return open_store(parse_delivery_config(raw, env={}), registry), registry


def test_an_unwritable_dead_letter_directory_keeps_records_spooled_until_it_is_fixed(
    tmp_path: Path, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    # A regular file where the dead-letter directory's parent should be: makedirs fails even as
    # root (chmod would not stop root).
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    collector.status = 400
    sink = {"type": "http_json", "url": collector.url, "retry_initial_ms": 20, "retry_max_ms": 100}
    raw = delivery_raw(tmp_path, {"alba": sink}, spool={"dead_letter_dir": str(blocker / "dead")})
    dead_io = {"sink": "alba", "class": "dead_letter_io"}

    async def run() -> None:
        store, registry = _store(raw)
        await store.start()
        await asyncio.gather(*(store.append(make_record(seq)) for seq in range(10)))
        await wait_for(
            lambda: metric(registry, "nanogridata_sink_errors_total", **dead_io) >= 3,
            20,
            "failed dead-letter writes to be counted and retried",
        )
        assert store.spool.record_count == 10
        assert store.spool.cursors.get("alba", 0) == 0  # nothing confirmed
        assert metric(registry, "nanogridata_sink_dead_letters_total", sink="alba") == 0
        assert f"cannot write dead letters to {blocker}" in caplog.text

        blocker.unlink()  # the operator fixes the directory
        await wait_for(lambda: store.spool.record_count == 0, 30, "the refused records to be dead-lettered")
        assert metric(registry, "nanogridata_sink_dead_letters_total", sink="alba") == 10

        collector.status = 200  # later batches are delivered and confirmed
        await asyncio.gather(*(store.append(make_record(seq)) for seq in range(10, 15)))
        await wait_for(lambda: store.spool.record_count == 0, 30, "later records to be confirmed")
        assert metric(registry, "nanogridata_sink_records_delivered_total", sink="alba") == 5
        await store.close()

    asyncio.run(run())
    dead = [json.loads(line) for line in (blocker / "dead" / "alba.jsonl").read_text().splitlines()]
    assert sorted(d["record"]["seq"] for d in dead) == list(range(10))
    assert sorted(r["seq"] for r in collector.records) == list(range(10, 15))


def test_any_failure_while_processing_a_batch_is_counted_and_retried(
    tmp_path: Path, collector: Collector
) -> None:
    sink = {"type": "http_json", "url": collector.url, "retry_initial_ms": 20, "retry_max_ms": 100}
    raw = delivery_raw(tmp_path, {"alba": sink})
    failures = {"left": 3}

    async def run() -> None:
        store, registry = _store(raw)
        worker = store.workers["alba"]
        encode = worker.sink.encode

        def flaky_encode(row: Row) -> bytes | None:
            if failures["left"] > 0:
                failures["left"] -= 1
                raise RuntimeError("encoder bug")
            return encode(row)

        worker.sink.encode = flaky_encode  # type: ignore[method-assign]
        await store.start()
        await asyncio.gather(*(store.append(make_record(seq)) for seq in range(20)))
        await wait_for(lambda: store.spool.record_count == 0, 30, "the batch to be retried and confirmed")
        internal = {"sink": "alba", "class": "internal"}
        assert metric(registry, "nanogridata_sink_errors_total", **internal) >= 1
        await store.close()

    asyncio.run(run())
    assert sorted({r["seq"] for r in collector.records}) == list(range(20))


def test_a_dead_letter_write_after_a_torn_one_starts_on_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "dead" / "alba.jsonl"
    path.parent.mkdir()
    path.write_bytes(b'{"deadLetteredAt":1,"sink":"alba","rea')  # cut short by a full disk
    DeadLetters(str(path)).write("alba", "HTTP 400: bad", [make_record(1), make_record(2)])
    lines = path.read_bytes().splitlines()
    assert len(lines) == 3
    assert [json.loads(line)["record"]["seq"] for line in lines[1:]] == [1, 2]
