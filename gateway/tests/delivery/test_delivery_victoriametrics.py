"""influx_line sink against a real VictoriaMetrics (started with -dedup.minScrapeInterval=1ms)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from nanogridata_gateway.delivery import DeliveryStore, open_store
from nanogridata_gateway.delivery_config import parse_delivery_config

from conftest import VictoriaMetrics, delivery_raw, make_record, metric, wait_for

pytestmark = pytest.mark.integration

# The drill stops VictoriaMetrics for 60 s; CI keeps it shorter unless asked.
OUTAGE_S = float(os.environ.get("NGD_VM_OUTAGE_S", "60"))
SERIES = '{__name__="nanogridata_0x10_pressure"}'


def _store(tmp: Path, vm: VictoriaMetrics) -> tuple[DeliveryStore, CollectorRegistry]:
    raw = delivery_raw(
        tmp,
        {
            "vm": {
                "type": "influx_line",
                "url": vm.write_url,
                "batch_size": 2000,
                "retry_initial_ms": 50,
                "retry_max_ms": 500,
            }
        },
    )
    registry = CollectorRegistry()
    return open_store(parse_delivery_config(raw, env={}), registry), registry


async def _count_settles(vm: VictoriaMetrics, expected: int, timeout: float) -> int:
    """Poll until the sample count reaches `expected` (ingestion is asynchronous in VM)."""
    count = -1

    def reached() -> bool:
        nonlocal count
        count = vm.count_samples(SERIES)
        return count >= expected

    with contextlib.suppress(AssertionError):  # the caller compares the final count
        await wait_for(lambda: asyncio.to_thread(reached), timeout, "samples", step=0.5)
    await asyncio.sleep(1.0)  # and make sure no extra sample shows up late
    return await asyncio.to_thread(vm.count_samples, SERIES)


def test_n_records_become_exactly_n_points_even_when_sent_twice(
    tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    n = 5000
    records = [make_record(seq, device_id=seq % 10) for seq in range(n)]

    async def deliver(spool_dir: Path) -> None:
        store, registry = _store(spool_dir, victoria)
        await store.start()
        await asyncio.gather(*(store.append(r) for r in records))
        await wait_for(lambda: store.spool.record_count == 0, 30, "spool to drain")
        assert metric(registry, "nanogridata_sink_records_delivered_total", sink="vm") == n
        await store.close()

    async def run() -> None:
        await deliver(tmp_path / "first")
        assert await _count_settles(victoria, n, 30) == n
        # At-least-once: a re-sent batch (e.g. after a crash before the cursor was saved) writes
        # identical points, which VictoriaMetrics' dedup collapses.
        await deliver(tmp_path / "second")
        assert await _count_settles(victoria, n + 1, 5) == n

    asyncio.run(run())


def test_victoriametrics_outage_loses_nothing_and_drains_after(
    tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    rate, duration = 1000, OUTAGE_S + 6  # records/s offered, seconds of load
    acked: list[int] = []

    async def run() -> None:
        store, registry = _store(tmp_path, victoria)
        await store.start()

        async def load() -> None:
            seq = 0
            start = time.monotonic()
            while time.monotonic() - start < duration:
                batch = [make_record(seq + i, device_id=(seq + i) % 50) for i in range(rate // 10)]
                await asyncio.gather(*(store.append(r) for r in batch))
                acked.extend(r.seq for r in batch)
                seq += len(batch)
                await asyncio.sleep(0.1)

        loader = asyncio.create_task(load())
        await asyncio.sleep(2)
        await asyncio.to_thread(victoria.stop)
        acked_before_stop = len(acked)
        await asyncio.sleep(OUTAGE_S)
        backlog = metric(registry, "nanogridata_spool_records")
        # Everything acked since the stop is still spooled (and visible as backlog).
        assert backlog >= len(acked) - acked_before_stop > 0, backlog
        assert metric(registry, "nanogridata_spool_oldest_record_age_seconds") >= OUTAGE_S - 1
        assert metric(registry, "nanogridata_sink_errors_total", sink="vm", **{"class": "connect"}) > 0
        await asyncio.to_thread(victoria.start)
        await loader
        await wait_for(lambda: store.spool.record_count == 0, 60, "backlog to drain")
        assert metric(registry, "nanogridata_spool_records") == 0
        await store.close()
        assert await _count_settles(victoria, len(acked), 30) == len(acked)

    asyncio.run(run())
