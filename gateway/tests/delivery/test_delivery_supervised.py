"""Crashes of the delivery store's background tasks are survived: the sink worker and the spool
committer are restarted by the supervisor, counted, and nothing stored is lost or left waiting."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from nanogridata_gateway.delivery import open_store
from nanogridata_gateway.delivery_config import parse_delivery_config

from conftest import Collector, delivery_raw, make_record, metric, wait_for


def test_a_crashed_sink_worker_is_restarted_and_delivers_everything(
    tmp_path: Path, collector: Collector
) -> None:
    raw = delivery_raw(tmp_path, {"alba": {"type": "http_json", "url": collector.url, "batch_size": 50}})
    registry = CollectorRegistry()
    store = open_store(parse_delivery_config(raw, env={}), registry)
    real_reader = store.spool.reader
    alba_bit = store.spool.bits["alba"]
    faults = [OSError("injected read error")]
    readers: list[Any] = []

    class FailingOnce:
        """alba's first read fails, as a bug or an I/O error in the worker would (whether it reads
        the database or the committed tail)."""

        def __init__(self) -> None:
            self.inner = real_reader()
            readers.append(self)

        def read(self, after_id: int, bit: int, limit: int) -> Any:
            if bit == alba_bit and faults:
                raise faults.pop()
            return self.inner.read(after_id, bit, limit)

        def close(self) -> None:
            self.inner.close()

    store.spool.reader = FailingOnce  # type: ignore[assignment,method-assign]
    real_read_committed = store.spool.read_committed

    def read_committed_failing_once(after_id: int, bit: int, limit: int) -> Any:
        """The same fault where a worker that keeps up reads: the committed tail."""
        if bit == alba_bit and faults:
            raise faults.pop()
        return real_read_committed(after_id, bit, limit)

    store.spool.read_committed = read_committed_failing_once  # type: ignore[method-assign]

    async def run() -> None:
        await store.start()
        await store.append_many([make_record(seq) for seq in range(200)])
        await wait_for(lambda: len(collector.records) == 200, 30, "every record delivered")
        assert metric(registry, "nanogridata_task_failures_total", task="sink-alba") == 1
        assert metric(registry, "nanogridata_task_failures_total", task="sink-local") == 0
        await wait_for(
            lambda: metric(registry, "nanogridata_task_healthy", task="sink-alba") == 1, 20, "healthy"
        )
        await wait_for(lambda: store.spool.record_count == 0, 20, "the spool emptied")
        await store.close()

    asyncio.run(run())
    assert len(readers) == 3  # alba, local, and alba's restart
    assert sorted(r["seq"] for r in collector.records) == list(range(200))


def test_a_crashed_committer_fails_its_waiters_and_is_restarted(tmp_path: Path) -> None:
    """A crash after the commit and before the waiters were answered: they get an error (the
    server answers BUSY, the device retransmits) instead of waiting forever; appends then work."""
    raw = delivery_raw(tmp_path, {"out": {"type": "jsonl", "path": str(tmp_path / "out.jsonl")}})
    registry = CollectorRegistry()
    store = open_store(parse_delivery_config(raw, env={}), registry)
    histogram = store.spool.metrics.commit_seconds
    real_observe = histogram.observe
    faults = [RuntimeError("injected committer fault")]

    def observe(value: float) -> None:
        if faults:
            raise faults.pop()
        real_observe(value)

    histogram.observe = observe  # type: ignore[method-assign]

    async def run() -> None:
        await store.start()
        async with asyncio.timeout(20):
            with pytest.raises(RuntimeError, match="spool committer failed"):
                await store.append(make_record(1))
        assert not store.spool.supervisor.healthy()
        assert metric(registry, "nanogridata_task_failures_total", task="spool-committer") == 1
        async with asyncio.timeout(20):
            await store.append(make_record(2))  # the restarted committer commits it
        await wait_for(store.spool.supervisor.healthy, 20, "the committer healthy again")
        out = tmp_path / "out.jsonl"
        await wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 2, 20, "delivered")
        await store.close()

    asyncio.run(run())
    # The failed waiter's record had been committed: delivered too (a retransmission would be
    # collapsed downstream by its idempotency key).
    seqs = sorted(json.loads(line)["seq"] for line in (tmp_path / "out.jsonl").read_text().splitlines())
    assert seqs == [1, 2]
