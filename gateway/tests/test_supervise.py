"""Supervised background tasks: a crash is logged once with its traceback, counted, restarted
with backoff, and turns readiness false while a critical task is down; a cancel is clean. Then a
real task of a running gateway (the ingest sweep) crashes and the gateway survives it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from nanogridata_gateway.protocol import AckStatus
from nanogridata_gateway.supervise import Supervisor
from test_server import metric, run

from ingest_support import Device, http_get, make_config, running_gateway, wait_until


def sample(registry: CollectorRegistry, name: str, task: str) -> float | None:
    return registry.get_sample_value(name, {"task": task})


def test_a_crash_is_logged_once_counted_restarted_and_unready_until_settled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    supervisor = Supervisor(registry)
    runs: list[int] = []
    release = asyncio.Event()

    async def task() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise RuntimeError(f"boom {len(runs)}")
        await release.wait()

    async def scenario() -> None:
        with caplog.at_level(logging.ERROR, logger="nanogridata.supervise"):
            handle = supervisor.spawn(
                "worker", task, critical=True, initial_backoff_s=0.05, max_backoff_s=1.0, settle_s=0.2
            )
            await wait_until(
                lambda: sample(registry, "nanogridata_task_failures_total", "worker") == 2, "2 crashes"
            )
            assert not supervisor.healthy() and supervisor.unhealthy() == ["worker"]
            assert sample(registry, "nanogridata_task_healthy", "worker") == 0
            await wait_until(lambda: len(runs) == 3, "a third run")
            await wait_until(supervisor.healthy, "healthy after the restart settled")
            assert sample(registry, "nanogridata_task_healthy", "worker") == 1
            assert supervisor.tasks["worker"].last_error == "RuntimeError: boom 2"
            release.set()
            await handle  # returned normally: finished, no failure
        records = [r for r in caplog.records if r.name == "nanogridata.supervise"]
        assert len(records) == 2  # one line per crash
        assert all(r.exc_info is not None for r in records)  # with the traceback
        assert "restarting in" in records[0].getMessage()

    asyncio.run(scenario())
    assert sample(registry, "nanogridata_task_failures_total", "worker") == 2


def test_a_cancel_is_a_clean_stop_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    supervisor = Supervisor(registry)

    async def forever() -> None:
        await asyncio.Event().wait()

    async def scenario() -> None:
        handle = supervisor.spawn("sweep", forever, critical=True)
        await asyncio.sleep(0)
        handle.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handle

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert sample(registry, "nanogridata_task_failures_total", "sweep") == 0
    assert sample(registry, "nanogridata_task_healthy", "sweep") == 1
    assert supervisor.healthy()
    assert not [r for r in caplog.records if r.name == "nanogridata.supervise"]


def test_without_restart_a_crashed_task_stays_down() -> None:
    registry = CollectorRegistry()
    supervisor = Supervisor(registry)
    runs = []

    async def once() -> None:
        runs.append(1)
        raise ValueError("bad")

    async def scenario() -> None:
        await supervisor.spawn("oneshot", once, restart=False)  # does not raise

    asyncio.run(scenario())
    assert runs == [1]
    assert sample(registry, "nanogridata_task_healthy", "oneshot") == 0
    assert supervisor.healthy()  # not critical: readiness is not affected
    assert supervisor.unhealthy() == ["oneshot"]


def test_one_supervisor_per_registry() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    assert Supervisor.of(a) is Supervisor.of(a)
    assert Supervisor.of(a) is not Supervisor.of(b)


def test_a_crash_of_the_ingest_sweep_is_survived(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The sweep's fsync raises once: logged, counted, /ready 503 until the restart settled,
    then idle connections are closed again; frames are ACKed throughout; the stop is clean."""

    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path, idle_timeout_s=2.0)) as (gw, store):
            assert gw.server is not None and gw.control is not None
            http = gw.control.port
            real_fsync = gw.replay.fsync
            crashes = []

            def failing_fsync() -> None:
                if not crashes:
                    crashes.append(1)
                    raise RuntimeError("injected sweep fault")
                real_fsync()

            gw.replay.fsync = failing_fsync  # type: ignore[method-assign]
            dev = Device(1)
            await dev.connect(gw.server.port)
            await dev.send(dev.frame(1))  # something to fsync
            assert [a.status for a in await dev.acks(1)] == [AckStatus.OK]

            async def status() -> int:
                code, _ = await http_get(http, "/ready")
                return code

            async def failures() -> float:
                _, text = await http_get(http, "/metrics")
                return metric(text, "nanogridata_task_failures_total", task="ingest-sweep")

            sweep = gw.server.supervisor.tasks["ingest-sweep"]
            await wait_until(lambda: sweep.failures == 1, "the sweep never crashed", timeout=30)
            assert not gw.server.is_ready()  # down until the restarted sweep settled (1.5 s)
            assert await failures() == 1
            await wait_until(lambda: _eq(status(), 200), "/ready never came back")
            _, text = await http_get(http, "/metrics")
            assert metric(text, "nanogridata_task_healthy", task="ingest-sweep") == 1
            await dev.close()  # idle by now (the sweep may already have closed it)
            dev = Device(1)
            await dev.connect(gw.server.port)
            await dev.send(dev.frame(2))
            assert [a.status for a in await dev.acks(1)] == [AckStatus.OK]
            idle = Device(2)
            await idle.connect(gw.server.port)
            assert await idle.closed_by_peer(20.0)  # the restarted sweep closes idle connections
            await dev.close()
            assert [r.seq for r in store.records] == [1, 2]
        assert crashes == [1]

    with caplog.at_level(logging.ERROR, logger="nanogridata.supervise"):
        run(scenario())
    crash_logs = [r for r in caplog.records if r.name == "nanogridata.supervise"]
    assert len(crash_logs) == 1 and "ingest-sweep" in crash_logs[0].getMessage()


async def _eq(value: Any, want: int) -> bool:
    return bool(await value == want)
