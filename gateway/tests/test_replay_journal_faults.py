"""The replay journal on a disk that refuses writes (full disk, file size limit, I/O error).

The store decides what is stored: a frame the store accepted is ACKed OK even when its replay
mark cannot be journaled; the gateway reports the journal (/ready 503, metrics), keeps the marks
in memory, keeps its sweep running, rewrites every window into a snapshot once the disk takes
writes again, and exits cleanly on SIGTERM either way.
"""

from __future__ import annotations

import asyncio
import builtins
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nanogridata_gateway import replay as replay_module
from nanogridata_gateway.app import Gateway
from nanogridata_gateway.protocol import AckStatus
from nanogridata_gateway.replay import PersistentReplayGuard
from test_server import metric, run

from ingest_support import Device, MemoryStore, http_get, make_config, running_gateway, wait_until


class FullDisk:
    """The replay module's view of the file system: while `full`, every data write and fsync
    fails with ENOSPC (as on a full disk), a short write first when `short` is set."""

    def __init__(self) -> None:
        self.full = False
        self.short = False

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _refuse(self) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write(self, fd: int, data: bytes) -> int:
        if self.full and self.short and len(data) > 4:
            self.short = False
            return os.write(fd, bytes(data[:4]))  # a torn record: the disk filled up mid-write
        self._refuse()
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        self._refuse()
        os.fsync(fd)

    def open_file(self, path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+"):
            self._refuse()
        return builtins.open(path, mode, *args, **kwargs)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[FullDisk]:
    fault = FullDisk()
    monkeypatch.setattr(replay_module, "os", fault)
    monkeypatch.setattr(replay_module, "open", fault.open_file, raising=False)
    yield fault


async def ready(port: int) -> int:
    status, _ = await http_get(port, "/ready")
    return status


def test_guard_keeps_marks_in_memory_and_repairs_when_the_disk_frees(tmp_path: Path, disk: FullDisk) -> None:
    guard = PersistentReplayGuard(tmp_path)
    guard.mark(0x10, 1, 1)
    guard.flush()
    disk.full = disk.short = True
    guard.mark(0x10, 1, 2)
    guard.flush()  # a torn record reaches the journal, then nothing more
    for seq in range(3, 20_000):  # 180 kB of marks: more than one 64 kB flush, none raises
        guard.mark(0x10, 1, seq)
    guard.mark(0x10, 2, 7)
    guard.flush()
    guard.fsync()
    assert not guard.writable and guard.write_errors >= 1
    assert guard.seen(0x10, 1, 19_999) and guard.seen(0x10, 2, 7)  # in memory all along
    assert not guard.repair() and not guard.writable  # the disk still refuses
    disk.full = False
    assert guard.repair() and guard.writable
    guard.mark(0x10, 2, 8)
    guard.flush()  # no close(): as if the process were killed now
    again = PersistentReplayGuard(tmp_path)  # torn tail discarded, every window persisted
    assert again.seen(0x10, 1, 19_999) and again.seen(0x10, 2, 7) and again.seen(0x10, 2, 8)
    assert not again.seen(0x10, 1, 20_000) and not again.seen(0x10, 2, 9)
    again.close()
    guard.close()


def test_a_full_disk_at_start_loads_the_state_and_starts_unwritable(tmp_path: Path, disk: FullDisk) -> None:
    first = PersistentReplayGuard(tmp_path)
    first.mark(0x10, 1, 5)
    first.flush()  # no close(): as if the process were killed now
    disk.full = True
    guard = PersistentReplayGuard(tmp_path)  # does not raise: a full disk is not a config error
    assert not guard.writable and guard.seen(0x10, 1, 5)
    guard.mark(0x10, 1, 6)
    disk.full = False
    assert guard.repair()
    guard.close()
    again = PersistentReplayGuard(tmp_path)
    assert again.seen(0x10, 1, 5) and again.seen(0x10, 1, 6) and not again.seen(0x10, 1, 7)
    again.close()
    first.close()


def test_close_on_a_full_disk_logs_instead_of_raising(
    tmp_path: Path, disk: FullDisk, caplog: pytest.LogCaptureFixture
) -> None:
    guard = PersistentReplayGuard(tmp_path)
    disk.full = True
    guard.mark(0x10, 1, 1)
    with caplog.at_level(logging.ERROR, logger="nanogridata.replay"):
        guard.close()
    assert "replay state not persisted at shutdown" in caplog.text


def test_a_journal_write_error_keeps_acks_honest_and_recovers(tmp_path: Path, disk: FullDisk) -> None:
    """The stored frame is ACKed OK (not left unanswered), its retransmission gets DUPLICATE and
    is not stored again (also not after a restart), /ready and the metrics say so, the sweep
    keeps closing idle connections, and the journal recovers when the disk frees."""

    async def scenario() -> None:
        config = make_config(tmp_path, idle_timeout_s=2.0)
        async with running_gateway(config) as (gw, store):
            assert gw.server is not None and gw.control is not None
            port, http = gw.server.port, gw.control.port
            dev = Device(1)
            await dev.connect(port)
            await dev.send(dev.frame(1))
            assert [a.status for a in await dev.acks(1)] == [AckStatus.OK]
            assert await ready(http) == 200

            disk.full = True
            frame = dev.frame(2)
            await dev.send(frame)
            [ack] = await dev.acks(1)
            assert (ack.seq, ack.status) == (2, AckStatus.OK)  # stored: the store is the truth
            await wait_until(lambda: _is(ready(http), 503), "/ready stayed 200")
            _, text = await http_get(http, "/metrics")
            assert metric(text, "nanogridata_replay_journal_writable") == 0
            assert metric(text, "nanogridata_replay_journal_errors_total") >= 1
            assert metric(text, "nanogridata_ready") == 0
            await dev.send(frame)  # the device did not hear the OK and retransmits
            [ack] = await dev.acks(1)
            assert (ack.seq, ack.status) == (2, AckStatus.DUPLICATE)
            assert [r.seq for r in store.records] == [1, 2]

            idle = Device(2)  # the sweep still runs: an idle connection is closed
            await idle.connect(port)
            assert await idle.closed_by_peer(20.0)

            disk.full = False
            await wait_until(lambda: _is(ready(http), 200), "/ready never recovered")
            _, text = await http_get(http, "/metrics")
            assert metric(text, "nanogridata_replay_journal_writable") == 1
            assert metric(text, "nanogridata_task_failures_total", task="ingest-sweep") == 0
            await dev.close()
            await idle.close()

        async with running_gateway(config) as (gw, store):  # restart on the same state
            assert gw.server is not None
            dev = Device(1)
            await dev.connect(gw.server.port)
            await dev.send(frame)
            [ack] = await dev.acks(1)
            assert (ack.seq, ack.status) == (2, AckStatus.DUPLICATE)
            assert store.records == []
            await dev.close()

    run(scenario())


def test_sigterm_exits_0_while_the_journal_is_unwritable(tmp_path: Path, disk: FullDisk) -> None:
    async def scenario() -> None:
        store = MemoryStore()
        gw = Gateway(make_config(tmp_path), store_factory=lambda _c, _m: store)
        running = asyncio.ensure_future(gw.run())
        await wait_until(lambda: gw.control is not None and gw.control.port != 0, "never started")
        assert gw.server is not None
        dev = Device(1)
        await dev.connect(gw.server.port)
        disk.full = True
        await dev.send(dev.frame(1))
        assert [a.status for a in await dev.acks(1)] == [AckStatus.OK]
        gw.stop_requested.set()  # what SIGTERM does
        async with asyncio.timeout(30):
            assert await running == 0
        await dev.close()

    run(scenario())


async def _is(status: Any, want: int) -> bool:
    return bool(await status == want)
