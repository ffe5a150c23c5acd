"""The server's per-read bookkeeping (one ACK write, one latency observation per read) and the
process settings applied after start-up: behaviour the hot-path work must keep."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanogridata_gateway.app import GC_GEN0_THRESHOLD, Gateway, tune_gc
from nanogridata_gateway.protocol import AckStatus
from nanogridata_gateway.records import Record, StoreFull
from nanogridata_gateway.schema import SchemaError, check_schema
from test_server import run

from ingest_support import Device, MemoryStore, make_config, running_gateway


class OddSeqFullStore(MemoryStore):
    """Refuses odd sequence numbers: one batch gets different statuses per record."""

    async def append(self, record: Record) -> None:
        if record.seq % 2:
            raise StoreFull("odd")
        await super().append(record)


def test_statuses_follow_their_frames_within_one_read(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path), OddSeqFullStore()) as (gw, store):
            a, b = Device(1), Device(2)
            await a.connect(gw.server.port)
            await b.connect(gw.server.port)
            await a.send(b"".join(a.frame(seq) for seq in range(1, 7)))
            await b.send(b"".join(b.frame(seq) for seq in range(10, 13)))
            acks_a, acks_b = await a.acks(6), await b.acks(3)
            assert [(k.seq, k.status) for k in acks_a] == [
                (seq, AckStatus.BUSY if seq % 2 else AckStatus.OK) for seq in range(1, 7)
            ]
            assert [(k.seq, k.status) for k in acks_b] == [
                (10, AckStatus.OK),
                (11, AckStatus.BUSY),
                (12, AckStatus.OK),
            ]
            assert sorted((r.device_id, r.seq) for r in store.records) == [
                (1, 2),
                (1, 4),
                (1, 6),
                (2, 10),
                (2, 12),
            ]
            # A BUSY frame stays retransmittable (not marked in the replay window) ...
            replay = gw.verifier.replay
            assert not replay.seen(0x10, 1, 1) and replay.seen(0x10, 1, 2)
            # ... and nothing is left in flight: every connection can send again.
            assert gw.server.stats()["frames_in_flight"] == 0
            assert all(conn.inflight == 0 for conn in gw.server.connections)
            m = gw.metrics
            # one latency sample and one processing sample per frame, though timed per read
            assert sum(m.ack_latency.counts) == 9
            assert sum(m.processing.counts) == 9
            assert m.rejected["busy"] == 4
            await a.close()
            await b.close()

    run(scenario())


def test_record_is_immutable_and_keyed() -> None:
    record = Record(0x10, 0x01, 0xABC, 7, 1_000, 2_000, b"\xa0")
    assert record.idempotency_key == "10-00000abc-7"
    assert record == Record(
        model_id=0x10,
        frame_type=1,
        device_id=0xABC,
        seq=7,
        timestamp_ms=1_000,
        received_ms=2_000,
        payload=b"\xa0",
    )
    with pytest.raises(AttributeError):
        record.seq = 8  # type: ignore[misc]


def test_schema_names_keys_before_values() -> None:
    with pytest.raises(SchemaError, match="map key 1 is not text"):
        check_schema(0x01, {"a": [1], 1: 2})
    with pytest.raises(SchemaError, match="telemetry value of 'a'"):
        check_schema(0x01, {"a": [1], "b": 2})
    check_schema(0x01, {"a": 1, "b": 2.5, "c": True, "d": "x"})
    check_schema(0x02, {"a": [1], "b": {"c": None}})  # EVENT: any values, text keys


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tune_gc_raises_threshold_and_freezes_startup_objects() -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 10, 10)
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restore_gc")
def test_gateway_run_tunes_gc_after_start(tmp_path: Path) -> None:
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()

    async def scenario() -> None:
        gw = Gateway(make_config(tmp_path), store_factory=lambda _c, _m: MemoryStore())
        assert await asyncio.wait_for(gw.run(stopped_early=lambda: True), 30) == 0

    run(scenario())
    assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD
    assert gc.get_freeze_count() > 0
