"""The spool behind records.Store: durability, group commit, limits, deletion rules, kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from nanogridata_gateway import spool as spool_module
from nanogridata_gateway.delivery import DeliveryStore, open_store
from nanogridata_gateway.delivery_config import parse_delivery_config
from nanogridata_gateway.records import StoreFull
from nanogridata_gateway.spool import Spool

from conftest import Collector, delivery_raw, free_port, make_record, metric, wait_for

GATEWAY_SRC = Path(__file__).resolve().parents[2] / "src"


def _store(raw: dict[str, object]) -> tuple[DeliveryStore, CollectorRegistry]:
    registry = CollectorRegistry()
    return open_store(parse_delivery_config(raw, env={}), registry), registry


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/nothing-listens-here"


def _jsonl_keys(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["idempotencyKey"] for line in path.read_text().splitlines()]


def test_appended_records_survive_close_and_reopen(tmp_path: Path) -> None:
    raw = delivery_raw(tmp_path, {"alba": {"type": "http_json", "url": _dead_url()}})

    async def write() -> None:
        store, registry = _store(raw)
        await store.start()
        await asyncio.gather(*(store.append(make_record(seq, device_id=seq % 7)) for seq in range(1, 1001)))
        assert metric(registry, "nanogridata_spool_records") == 1000
        await store.close()

    asyncio.run(write())
    out = tmp_path / "out.jsonl"
    raw2 = delivery_raw(tmp_path, {"alba": {"type": "jsonl", "path": str(out)}})

    async def drain() -> None:
        store, registry = _store(raw2)
        assert metric(registry, "nanogridata_spool_records") == 1000
        await store.start()
        await wait_for(lambda: store.spool.record_count == 0, 20, "spool to drain")
        await store.close()

    asyncio.run(drain())
    keys = _jsonl_keys(out)
    assert sorted(keys) == sorted(make_record(s, device_id=s % 7).idempotency_key for s in range(1, 1001))


def test_group_commit_puts_many_records_in_one_fsync(tmp_path: Path) -> None:
    raw = delivery_raw(
        tmp_path, {"alba": {"type": "http_json", "url": _dead_url()}}, spool={"commit_interval_ms": 10}
    )

    async def run() -> None:
        store, registry = _store(raw)
        await store.start()
        await asyncio.gather(*(store.append(make_record(seq)) for seq in range(1, 5001)))
        commits = metric(registry, "nanogridata_spool_commit_seconds_count")
        assert 1 <= commits <= 250, commits  # 5,000 records, at least 20 per fsync
        await store.close()

    asyncio.run(run())


def test_group_commit_starts_at_once_and_groups_what_arrives_during_a_commit(tmp_path: Path) -> None:
    """Default spacing 0: a lone append is committed at once (no timer); appends that arrive while a
    commit is in flight wait for it and then go together in the next one; never two at a time."""
    spool = _bare_spool(tmp_path / "spool.db", commit_interval_s=0.0)
    groups: list[int] = []
    running = 0
    overlapped = False
    write = spool._write
    fsync_done = threading.Event()  # the first commit is a slow fsync until the test ends it

    def slow_write(rows: list[Any], cursors: dict[str, int]) -> None:
        nonlocal running, overlapped
        running += 1
        overlapped = overlapped or running > 1
        fsync_done.wait(10)
        write(rows, cursors)
        groups.append(len(rows))
        running -= 1

    spool._write = slow_write  # type: ignore[method-assign]

    async def run() -> None:
        first = asyncio.ensure_future(spool.append(make_record(1), 1))
        await wait_for(lambda: running == 1, 10, "the lone append's commit to start")
        rest = [asyncio.ensure_future(spool.append(make_record(s), 1)) for s in range(2, 42)]
        await asyncio.sleep(0.05)  # the 40 appends queue behind the commit in flight
        assert groups == [] and not first.done()
        fsync_done.set()
        await asyncio.gather(first, *rest)
        await spool.close()

    asyncio.run(run())
    assert groups == [1, 40]
    assert not overlapped
    assert [row[4] for row in spool.iter_rows()] == list(range(1, 42))


def test_commit_interval_is_a_minimum_spacing_between_commits(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    spool = _bare_spool(tmp_path / "spool.db", commit_interval_s=0.3, registry=registry)

    async def run() -> float:
        await spool.append(make_record(1), 1)
        t0 = time.monotonic()
        await spool.append(make_record(2), 1)  # waits for the spacing to pass
        elapsed = time.monotonic() - t0
        await spool.close()
        return elapsed

    assert asyncio.run(run()) >= 0.25
    assert metric(registry, "nanogridata_spool_commit_seconds_count") == 2


def test_records_leave_only_when_every_routed_sink_confirmed(tmp_path: Path, collector: Collector) -> None:
    second = Collector()
    second.status = 503
    raw = delivery_raw(
        tmp_path,
        {
            "alba": {"type": "http_json", "url": collector.url, "retry_max_ms": 200},
            "cycle": {"type": "http_json", "url": second.url, "retry_max_ms": 200},
        },
        routes={"TELEMETRY": ["alba", "cycle"], "EVENT": ["alba"], "CONFIG": ["cycle"], "COMMAND": ["local"]},
    )

    async def run() -> None:
        store, registry = _store(raw)
        await store.start()
        await asyncio.gather(*(store.append(make_record(s, frame_type=0x01)) for s in range(100)))
        await asyncio.gather(
            *(store.append(make_record(s, device_id=2, frame_type=0x02)) for s in range(100))
        )
        await wait_for(lambda: len(collector.records) == 200, 20, "alba to get every record")
        # Events (alba only) are gone; telemetry waits for cycle, which answers 503.
        await wait_for(lambda: store.spool.record_count == 100, 10, "events to be deleted")
        await asyncio.sleep(0.5)
        assert store.spool.record_count == 100
        assert metric(registry, "nanogridata_sink_errors_total", sink="cycle", **{"class": "http_5xx"}) > 0
        second.status = 200
        await wait_for(lambda: store.spool.record_count == 0, 20, "telemetry to be deleted")
        assert len(second.records) == 100
        assert metric(registry, "nanogridata_spool_bytes") == 0
        await store.close()

    try:
        asyncio.run(run())
    finally:
        second.close()


def test_byte_limit_gives_busy_then_recovers_without_loss(tmp_path: Path, collector: Collector) -> None:
    collector.status = 503
    raw = delivery_raw(
        tmp_path,
        {"alba": {"type": "http_json", "url": collector.url, "retry_max_ms": 100}},
        spool={"max_bytes": 20_000},
    )

    async def run() -> None:
        store, registry = _store(raw)
        await store.start()
        acked: list[str] = []
        busy = 0
        for seq in range(1, 2000):
            record = make_record(seq)
            try:
                await store.append(record)
                acked.append(record.idempotency_key)
            except StoreFull:
                busy += 1
                if busy >= 5:
                    break
        assert busy == 5 and 50 < len(acked) < 2000
        assert not store.is_ready()
        assert metric(registry, "nanogridata_spool_full") == 1
        assert metric(registry, "nanogridata_spool_bytes") <= 20_000
        collector.status = 200  # space returns as the sink drains
        await wait_for(lambda: store.spool.record_count == 0, 20, "spool to drain")
        assert store.is_ready()
        assert metric(registry, "nanogridata_spool_full") == 0
        late = make_record(5000)
        await store.append(late)
        acked.append(late.idempotency_key)
        await wait_for(lambda: len(collector.records) == len(acked), 10, "the late record")
        await store.close()
        assert sorted(collector.keys()) == sorted(acked)

    asyncio.run(run())


def test_ids_are_not_reused_after_the_spool_emptied(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    raw = delivery_raw(tmp_path, {"alba": {"type": "jsonl", "path": str(out)}})

    async def run(first: int) -> None:
        store, _ = _store(raw)
        await store.start()
        for seq in range(first, first + 10):
            await store.append(make_record(seq))
        await wait_for(lambda: store.spool.record_count == 0, 10, "spool to drain")
        await store.close()

    asyncio.run(run(1))
    asyncio.run(run(11))  # a reused id would sit below the persisted cursor and never leave
    assert len(_jsonl_keys(out)) == 20


_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from prometheus_client import CollectorRegistry
    from nanogridata_gateway.delivery import open_store
    from nanogridata_gateway.delivery_config import parse_delivery_config
    from nanogridata_gateway.records import Record
    import json, cbor2

    raw = json.loads(sys.argv[1])
    store = open_store(parse_delivery_config(raw, env={}), CollectorRegistry())

    async def device(device_id):
        seq = 0
        while True:
            seq += 1
            now = int(time.time() * 1000)
            await store.append(Record(0x10, 1, device_id, seq, now, now, cbor2.dumps({"v": seq})))
            sys.stdout.write(f"{device_id} {seq}\\n")
            sys.stdout.flush()

    async def main():
        await store.start()
        await asyncio.gather(*(device(d) for d in range(50)))

    asyncio.run(main())
    """
)


def test_kill_9_mid_write_loses_no_acknowledged_record(tmp_path: Path) -> None:
    """Every record whose append() returned before SIGKILL is there after reopening."""
    raw = delivery_raw(tmp_path, {"alba": {"type": "http_json", "url": _dead_url()}})
    env = {**os.environ, "PYTHONPATH": str(GATEWAY_SRC)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(raw)], stdout=subprocess.PIPE, env=env, text=True
    )
    acked: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 60
    try:
        assert child.stdout is not None
        while len(acked) < 3000 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            device, seq = line.split()
            acked.add((int(device), int(seq)))
        child.send_signal(signal.SIGKILL)  # mid-write: 50 devices keep appending
        # Lines the child wrote before dying are acknowledgements too.
        for line in child.stdout:
            device, seq = line.split()
            acked.add((int(device), int(seq)))
    finally:
        child.kill()
        child.wait()
    assert len(acked) >= 3000, child.returncode

    out = tmp_path / "out.jsonl"
    raw2 = delivery_raw(tmp_path, {"alba": {"type": "jsonl", "path": str(out)}})

    async def drain() -> None:
        store, _ = _store(raw2)
        await store.start()
        await wait_for(lambda: store.spool.record_count == 0, 30, "spool to drain")
        await store.close()

    asyncio.run(drain())
    stored = {(r["deviceId"], r["seq"]) for r in map(json.loads, out.read_text().splitlines())}
    missing = acked - stored
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"


def test_kill_9_while_a_sink_drains_and_deletes_loses_nothing_and_reuses_no_id(tmp_path: Path) -> None:
    """SIGKILL while records are appended, delivered from the committed tail and deleted: every
    acknowledged record reaches the sink (before the kill or after the restart), and records
    appended after the restart are delivered too (an id used again would sit below the persisted
    cursor and never be sent: the highest id is recorded in the transaction that deletes)."""
    out = tmp_path / "out.jsonl"
    raw = delivery_raw(tmp_path, {"alba": {"type": "jsonl", "path": str(out), "batch_interval_ms": 5}})
    env = {**os.environ, "PYTHONPATH": str(GATEWAY_SRC)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(raw)], stdout=subprocess.PIPE, env=env, text=True
    )
    acked: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 90
    try:
        assert child.stdout is not None
        # Past the first deletions (every 0.2 s), so the kill lands among appends and deletes.
        while (len(acked) < 3000 or not out.exists()) and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            device, seq = line.split()
            acked.add((int(device), int(seq)))
        child.send_signal(signal.SIGKILL)
        for line in child.stdout:
            device, seq = line.split()
            acked.add((int(device), int(seq)))
    finally:
        child.kill()
        child.wait()
    assert len(acked) >= 3000 and out.exists(), child.returncode

    async def restart() -> None:
        store, _ = _store(raw)
        assert store.spool.cursors.get("alba", 0) > 0  # the kill came after deletions
        await store.start()
        for seq in range(1, 101):
            await store.append(make_record(seq, device_id=1000))
        await wait_for(lambda: store.spool.record_count == 0, 30, "spool to drain")
        await store.close()

    asyncio.run(restart())
    stored = {(r["deviceId"], r["seq"]) for r in map(json.loads, out.read_text().splitlines())}
    missing = (acked | {(1000, seq) for seq in range(1, 101)}) - stored
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"


def test_a_sink_behind_the_committed_tail_reads_the_database(
    tmp_path: Path, collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collector down while more records arrive than the tail keeps: the sink catches up from
    the database, then from the tail again, and every record arrives."""
    monkeypatch.setattr(spool_module, "TAIL_ROWS", 16)
    collector.status = 503
    sink = {
        "type": "http_json",
        "url": collector.url,
        "batch_size": 7,
        "retry_initial_ms": 20,
        "retry_max_ms": 50,
    }
    raw = delivery_raw(tmp_path, {"alba": sink})

    async def run() -> None:
        store, _ = _store(raw)
        await store.start()
        for seq in range(1, 201):
            await store.append(make_record(seq))
        assert len(store.spool._tail) <= 16
        collector.status = 200
        await wait_for(lambda: store.spool.record_count == 0, 30, "the backlog delivered")
        for seq in range(201, 251):  # caught up: from the tail again
            await store.append(make_record(seq))
        await wait_for(lambda: store.spool.record_count == 0, 30, "the new records delivered")
        await store.close()

    asyncio.run(run())
    assert sorted({r["seq"] for r in collector.records}) == list(range(1, 251))


@pytest.mark.parametrize("frame_type", [0x04])
def test_commands_go_to_the_local_handler(
    tmp_path: Path, frame_type: int, caplog: pytest.LogCaptureFixture
) -> None:
    raw = delivery_raw(tmp_path, {"alba": {"type": "http_json", "url": _dead_url()}})

    async def run() -> None:
        store, registry = _store(raw)
        await store.start()
        with caplog.at_level("INFO", logger="nanogridata_gateway.commands"):
            await store.append(make_record(7, frame_type=frame_type, payload={"cmd": "reboot"}))
            await wait_for(lambda: store.spool.record_count == 0, 10, "command handled")
        assert metric(registry, "nanogridata_sink_records_delivered_total", sink="local") == 1
        await store.close()

    asyncio.run(run())
    assert any("reboot" in message for message in caplog.messages)


def test_append_many_commits_a_batch_in_one_group(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    raw = delivery_raw(tmp_path, {"alba": {"type": "jsonl", "path": str(out)}}, spool={"max_bytes": 40_000})

    async def run() -> None:
        store, registry = _store(raw)
        await store.start()
        await store.append_many([make_record(seq, device_id=3) for seq in range(1, 101)])
        assert metric(registry, "nanogridata_spool_commit_seconds_count") == 1
        await wait_for(lambda: store.spool.record_count == 0, 10, "spool to drain")
        await store.close()
        # Full: refused as a whole, nothing of the batch is stored.
        store, registry = _store(raw)
        seq = 0
        while not store.spool.is_full():  # no sink running: the spool only fills
            await store.spool.append_many([(make_record(seq + i, device_id=4), 1) for i in range(10)])
            seq += 10
        with pytest.raises(StoreFull):
            await store.append_many([make_record(10_000 + i, device_id=4) for i in range(5)])
        assert store.spool.record_count == seq
        assert metric(registry, "nanogridata_spool_full") == 1
        await store.close()

    asyncio.run(run())
    assert len(_jsonl_keys(out)) == 100


def _bare_spool(
    path: Path, commit_interval_s: float = 0.001, registry: CollectorRegistry | None = None
) -> Spool:
    registry = registry if registry is not None else CollectorRegistry()
    return Spool(str(path), ["alba"], 1 << 30, 3600.0, commit_interval_s, 1000, registry)


def test_confirmed_records_are_deleted_even_when_a_commit_persisted_the_cursor_first(
    tmp_path: Path,
) -> None:
    """The group commit also persists dirty cursors. If it runs between a sink's last confirm and
    the next collect, the rows that confirm covered must still be deleted (else the spool never
    drains once traffic stops), and a restart must delete them too."""
    path = tmp_path / "spool.db"

    async def run() -> None:
        spool = _bare_spool(path)
        await spool.append_many((make_record(s), 1) for s in range(1, 11))
        spool.confirm("alba", 10)
        await spool.append(make_record(11), 1)  # this commit writes the cursor
        await spool.collect()
        assert spool.record_count == 1
        spool.confirm("alba", 11)
        await spool.append(make_record(12), 1)
        await spool.close()  # cursor 11 persisted by the commit; row 11 may remain on disk

    asyncio.run(run())

    async def reopen() -> None:
        spool = _bare_spool(path)
        await spool.collect()
        assert [row[0] for row in spool.iter_rows()] == [12]
        assert spool.record_count == 1
        await spool.close()

    asyncio.run(reopen())


def test_the_committed_tail_keeps_rows_only_until_every_routed_sink_confirmed(tmp_path: Path) -> None:
    """Memory: a row leaves the tail when every sink it is routed to confirmed it (a sink it is not
    routed to may lag behind), in id order, and the tail is empty once everything is confirmed.
    What the tail no longer holds, a sink reads from the database."""
    spool = Spool(str(tmp_path / "spool.db"), ["a", "b"], 1 << 30, 3600.0, 0.0, 1000, CollectorRegistry())
    a, b = 1 << spool.bits["a"], 1 << spool.bits["b"]

    async def run() -> None:
        masks = [a, b, a, a | b, a]  # ids 1..5
        await spool.append_many([(make_record(seq), mask) for seq, mask in enumerate(masks, 1)])
        tail_ids = lambda: [row[0] for row in spool._tail]  # noqa: E731
        assert tail_ids() == [1, 2, 3, 4, 5]
        spool.confirm("a", 5)
        await spool.collect()
        assert tail_ids() == [2, 3, 4, 5]  # 2 is owed to b (cursor 0)
        spool.confirm("b", 2)
        await spool.collect()
        assert tail_ids() == [4, 5]  # 3 is a's only; 4 is still owed to b
        assert spool.read_committed(0, spool.bits["b"], 10) is None  # below the tail: the database
        reader = spool.reader()
        rows, _ = reader.read(2, spool.bits["b"], 10)  # 5 was a's only: deleted from the database
        reader.close()
        assert [row[0] for row in rows] == [4]
        assert spool.read_committed(4, spool.bits["b"], 10) == ([], 5)  # past the database's end
        got = spool.read_committed(3, spool.bits["a"], 10)
        assert got is not None and [row[0] for row in got[0]] == [4, 5] and got[1] == 5
        spool.confirm("b", 5)
        await spool.collect()
        assert tail_ids() == [] and spool.record_count == 0
        await spool.close()

    asyncio.run(run())
