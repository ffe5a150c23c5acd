"""Durable spool: SQLite in WAL mode with group commit, per-sink cursors and byte/age limits.

Why SQLite WAL (see docs/delivery.md): atomic multi-row commits with checksummed WAL frames and
crash recovery we do not have to write, one fsync per commit (synchronous=FULL), readers that do
not block the writer, and an on-disk format every operator can inspect with `sqlite3`.

Threading: every write (inserts, cursor updates, deletes) runs on ONE writer thread with its own
connection, so writes are serialized without lock contention. Sink readers use their own
connections (WAL readers see a consistent snapshot and never block the writer).

Ids are assigned here, monotonically, and never reused (even after the table was emptied): a
sink's cursor ("every record routed to me with id <= cursor is confirmed") stays meaningful.

The committed tail: the rows of the latest commits stay in memory (bounded) after their commit,
as the very tuples that were inserted, so a sink worker that keeps up takes its batches from
there instead of reading back and re-materialising rows through SQLite on a thread of its own.
Only committed rows enter it, so what a sink reads is the same either way; a sink that falls
behind the tail (down, slow, after a restart) reads the database.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Gauge, Histogram

from .errors import ConfigError
from .records import Record, StoreFull, record_key
from .supervise import Supervisor

log = logging.getLogger(__name__)

# Bytes charged per row on top of the payload (keys, integers, page overhead, index entry).
ROW_OVERHEAD_BYTES = 64
# Payloads are at most 1024 bytes (protocol v1): "full" means such a record no longer fits, so
# BUSY does not depend on the size of the frame that happens to arrive.
MAX_RECORD_BYTES = 1024 + ROW_OVERHEAD_BYTES

# Rows of the committed tail kept for the sinks at most (about 3 MB of 100-byte payloads): many
# batch intervals at 10,000 frames/s. A sink further behind reads the database.
TAIL_ROWS = 8192

# (id, model, type, device, seq, timestamp_ms, received_ms, payload, sinks bit mask): the row as
# inserted, as read back, and as kept in the committed tail.
Row = tuple[int, int, int, int, int, int, int, bytes, int]
_COLUMNS = "id, model, type, device, seq, ts_ms, recv_ms, payload, sinks"
_row_id = itemgetter(0)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    model INTEGER NOT NULL,
    type INTEGER NOT NULL,
    device INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    recv_ms INTEGER NOT NULL,
    payload BLOB NOT NULL,
    sinks INTEGER NOT NULL          -- bit mask of the sinks this record is routed to
);
CREATE TABLE IF NOT EXISTS sinks (
    name TEXT PRIMARY KEY,
    bit INTEGER NOT NULL UNIQUE,
    cursor INTEGER NOT NULL DEFAULT 0 -- every record routed here with id <= cursor is confirmed
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait for `event` at most `timeout` seconds. (Not asyncio.wait_for: on 3.11 its inner task
    can outlive a cancellation at loop shutdown and hang asyncio.run.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


def idempotency_key(row: Row) -> str:
    """Record.idempotency_key, without building the Record."""
    return record_key(row[1], row[3], row[4])


def row_to_record(row: Row) -> Record:
    return Record(
        model_id=row[1],
        frame_type=row[2],
        device_id=row[3],
        seq=row[4],
        timestamp_ms=row[5],
        received_ms=row[6],
        payload=row[7],
    )


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)
    )


def _owed(conn: sqlite3.Connection, sink_names: Collection[str]) -> dict[str, int]:
    """Sinks the spool knows that are not in `sink_names`, with the number of records each still
    owes (routed to it, past its cursor)."""
    owed: dict[str, int] = {}
    for name, bit, cursor in conn.execute("SELECT name, bit, cursor FROM sinks").fetchall():
        if name not in sink_names:
            (count,) = conn.execute(
                "SELECT count(*) FROM records WHERE id > ? AND (sinks & ?) != 0", (cursor, 1 << bit)
            ).fetchone()
            owed[name] = count
    return owed


def refuse_orphans(owed: Mapping[str, int], drop_sinks: Collection[str]) -> None:
    """ConfigError when a sink that is no longer configured still owes records and the operator
    did not drop them explicitly: acknowledged records never go with a rename or a typo."""
    orphans = {name: count for name, count in sorted(owed.items()) if count and name not in drop_sinks}
    if not orphans:
        return
    listed = ", ".join(f"{name!r} ({count} records)" for name, count in orphans.items())
    names = ", ".join(f'"{name}"' for name in orphans)
    raise ConfigError(
        "spool.drop_sinks",
        f"the spool still owes records to sinks that are no longer configured: {listed};"
        " a renamed sink does not inherit them",
        f"those sinks back under [sinks] until they drained, or spool.drop_sinks = [{names}]"
        " to delete their records for good",
    )


def orphaned_sinks(path: str, sink_names: Collection[str]) -> dict[str, int]:
    """_owed() on the spool at `path`, read-only (check-config beside a running gateway); {} when
    there is no spool yet or it cannot be read (serve checks again when it opens the spool)."""
    if not os.path.exists(path):
        return {}
    try:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        return _owed(conn, sink_names)
    except sqlite3.Error:
        return {}
    finally:
        conn.close()


T = TypeVar("T")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # its waiter was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class WriterThread:
    """The one thread that runs the spool's writes (commits, deletions, close).

    Jobs go over a SimpleQueue and come back with call_soon_threadsafe. Not run_in_executor:
    a one-row commit through a ThreadPoolExecutor cost about twice the CPU of the same commit
    handed over this way (the commit itself, fsync included, costs as much as the executor's
    overhead), and at low rates there is a commit for every frame or two. Jobs run one at a time
    in order, so writes never contend for SQLite's write lock."""

    def __init__(self, name: str = "spool-writer") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]] | None
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on the writer thread; its result or its exception."""
        if self._thread is None:
            # A daemon: a process that exits without close() is not held up by it (SQLite keeps
            # what was committed; an open transaction is rolled back at the next open).
            self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return await future

    def _main(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, fn, args = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting task, which decides
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(_settle, future, result, error)

    def stop(self) -> None:
        """Finish the queued jobs and end the thread."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None


@dataclass
class SpoolMetrics:
    records: Gauge
    bytes: Gauge
    limit_bytes: Gauge
    oldest_age: Gauge
    full: Gauge
    commit_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SpoolMetrics:
        return cls(
            records=Gauge(
                "nanogridata_spool_records",
                "Records not yet confirmed by every sink",
                registry=registry,
            ),
            bytes=Gauge(
                "nanogridata_spool_bytes",
                "Spool size (payload + per-row overhead)",
                registry=registry,
            ),
            limit_bytes=Gauge("nanogridata_spool_limit_bytes", "Spool byte limit", registry=registry),
            oldest_age=Gauge(
                "nanogridata_spool_oldest_record_age_seconds",
                "Age of the oldest unconfirmed record",
                registry=registry,
            ),
            full=Gauge("nanogridata_spool_full", "1 while new frames get BUSY", registry=registry),
            commit_seconds=Histogram(
                "nanogridata_spool_commit_seconds",
                "Group-commit (fsync) latency",
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                registry=registry,
            ),
        )


class SpoolReader:
    """A read connection for one sink worker (used from one thread at a time)."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA query_only=1")

    def read(self, after_id: int, bit: int, limit: int) -> tuple[list[Row], int]:
        """Rows routed to `bit` with id > after_id (at most `limit`), and how far we scanned.

        When fewer than `limit` rows come back, every committed id up to the returned position was
        looked at, so the caller's cursor may skip there even if no row was for it.
        """
        conn = self._conn
        conn.execute("BEGIN")  # one snapshot for both statements
        try:
            (max_id,) = conn.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()
            rows: list[Row] = conn.execute(
                f"SELECT {_COLUMNS} FROM records"
                " WHERE id > ? AND id <= ? AND (sinks & ?) != 0 ORDER BY id LIMIT ?",
                (after_id, max_id, 1 << bit, limit),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        scanned = rows[-1][0] if len(rows) >= limit else max(max_id, after_id)
        return rows, scanned

    def close(self) -> None:
        self._conn.close()


class Spool:
    """The durable queue. Create with `Spool.open`, then `await append(...)` from the event loop."""

    def __init__(
        self,
        path: str,
        sink_names: Sequence[str],
        max_bytes: int,
        max_age_s: float,
        commit_interval_s: float,
        max_commit_records: int,
        registry: CollectorRegistry,
        drop_sinks: Collection[str] = (),
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.commit_interval_s = commit_interval_s
        self.max_commit_records = max_commit_records
        self.metrics = SpoolMetrics.create(registry)
        self.supervisor = Supervisor.of(registry)
        self.metrics.limit_bytes.set(max_bytes)
        self.metrics.oldest_age.set_function(self._oldest_age)
        # Read when scraped, not set per commit (a commit per frame at low rates)
        self.metrics.records.set_function(lambda: self.record_count)
        self.metrics.bytes.set_function(lambda: self.byte_count)
        self.metrics.full.set_function(lambda: 1 if self.is_full() else 0)

        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._writer = WriterThread()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL at every commit
        self._conn.execute("PRAGMA wal_autocheckpoint=4000")
        self._conn.executescript(_SCHEMA)

        try:
            self.bits: dict[str, int] = self._assign_bits(sink_names, drop_sinks)
        except BaseException:
            self._conn.close()
            raise
        self.cursors: dict[str, int] = {
            name: cursor
            for name, cursor in self._conn.execute("SELECT name, cursor FROM sinks")
            if name in self.bits
        }
        (max_id,) = self._conn.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()
        max_cursor = max(self.cursors.values(), default=0)
        row = self._conn.execute("SELECT value FROM meta WHERE key='last_id'").fetchone()
        self._next_id = max(max_id, max_cursor, row[0] if row else 0) + 1

        count, total = self._conn.execute(
            f"SELECT count(*), coalesce(sum(length(payload)), 0) + count(*) * {ROW_OVERHEAD_BYTES}"
            " FROM records"
        ).fetchone()
        self.record_count: int = count
        self.byte_count: int = total
        self._oldest_recv_ms: int | None = self._query_oldest()

        # The committed tail (module docstring): every committed id > _tail_floor is in _tail.
        self._tail: list[Row] = []
        self._tail_floor = self._next_id - 1
        # queued groups: (rows with their ids, bytes, waiter, the sinks they are routed to)
        self._pending: list[tuple[list[Row], int, asyncio.Future[None], int]] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._wake: asyncio.Event | None = None
        self._committer: asyncio.Task[None] | None = None
        self._committing: list[asyncio.Future[None]] = []  # waiters of the group being committed
        self._last_commit = 0.0
        self._closed = False
        self._healthy = True
        self._dirty_cursors: dict[str, int] = {}
        # Rows may be confirmed but not deleted: set by confirm() and at open (a crash can land
        # between persisting a cursor and deleting). Separate from _dirty_cursors because the
        # group commit also persists cursors, and that must not cancel the deletion.
        self._collect_due = True
        self._commit_listeners: list[tuple[int, Callable[[], None]]] = []
        self._stats_lock = threading.Lock()

    # --- setup ---------------------------------------------------------------------------

    def _assign_bits(self, sink_names: Sequence[str], drop_sinks: Collection[str]) -> dict[str, int]:
        """Stable sink -> bit mapping across restarts. A sink no longer configured is released
        only when it owes nothing or the operator named it in spool.drop_sinks; otherwise the
        spool refuses to open (ConfigError) and changes nothing."""
        owed = _owed(self._conn, sink_names)
        refuse_orphans(owed, drop_sinks)
        known = dict(self._conn.execute("SELECT name, bit FROM sinks").fetchall())
        self._conn.execute("BEGIN IMMEDIATE")
        if owed:  # rows may go: keep the highest id used (see _delete_confirmed)
            self._conn.execute(
                "INSERT OR REPLACE INTO meta SELECT 'last_id', max("
                " coalesce((SELECT value FROM meta WHERE key = 'last_id'), 0),"
                " coalesce((SELECT max(id) FROM records), 0))"
            )
        for name, count in owed.items():
            bit = known.pop(name)
            if count:
                log.warning(
                    "sink %r is no longer configured and listed in spool.drop_sinks:"
                    " deleting the %d records it still owed",
                    name,
                    count,
                )
            else:
                log.info("sink %r is no longer configured and owes nothing: released", name)
            self._conn.execute(
                "UPDATE records SET sinks = sinks & ~? WHERE (sinks & ?) != 0", (1 << bit, 1 << bit)
            )
            self._conn.execute("DELETE FROM records WHERE sinks = 0")
            self._conn.execute("DELETE FROM sinks WHERE name = ?", (name,))
        used = set(known.values())
        for name in sink_names:
            if name not in known:
                bit = next(b for b in range(62) if b not in used)
                used.add(bit)
                known[name] = bit
                self._conn.execute("INSERT INTO sinks(name, bit, cursor) VALUES (?, ?, 0)", (name, bit))
        self._conn.execute("COMMIT")
        return {name: known[name] for name in sink_names}

    def _query_oldest(self) -> int | None:
        row = self._conn.execute("SELECT recv_ms FROM records ORDER BY id LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def reader(self) -> SpoolReader:
        return SpoolReader(self.path)

    def add_commit_listener(self, bit: int, callback: Callable[[], None]) -> None:
        """Call `callback` after each commit that holds a record routed to sink `bit` (a sink
        nothing is routed to is not woken by every commit to find nothing)."""
        self._commit_listeners.append((1 << bit, callback))

    def read_committed(self, after_id: int, bit: int, limit: int) -> tuple[list[Row], int] | None:
        """SpoolReader.read from the committed tail, in the event loop; None when the tail does
        not hold every committed id after `after_id` (read the database then)."""
        if after_id < self._tail_floor:
            return None
        tail = self._tail
        start = bisect.bisect_right(tail, after_id, key=_row_id)
        mask = 1 << bit
        rows: list[Row] = []
        for row in tail[start:] if start else tail:
            if row[8] & mask:
                rows.append(row)
                if len(rows) >= limit:
                    return rows, row[0]
        last = tail[-1][0] if tail else self._tail_floor
        return rows, max(last, after_id)

    def _drop_tail(self) -> None:
        """Empty the tail and move its floor past every id taken: sinks read the database until
        commits refill it. For a commit whose outcome the tail cannot know (an error, a crash
        of the committer after COMMIT)."""
        self._tail.clear()
        self._tail_floor = self._next_id - 1

    def _trim_tail(self) -> None:
        """Keep at most TAIL_ROWS rows: the oldest go first (a sink that needs them reads the
        database)."""
        tail = self._tail
        cut = len(tail) - TAIL_ROWS
        if cut > 0:
            self._tail_floor = max(self._tail_floor, tail[cut - 1][0])
            del tail[:cut]

    # --- state -------------------------------------------------------------------------

    def _oldest_age(self) -> float:
        oldest = self._oldest_recv_ms
        return 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)

    def is_full(self) -> bool:
        """True when a maximum-size record would not fit, or the oldest record is too old."""
        return (
            self.byte_count + self._pending_bytes + MAX_RECORD_BYTES > self.max_bytes
            or self._oldest_age() > self.max_age_s
        )

    def is_ready(self) -> bool:
        return self._healthy and not self._closed and not self.is_full()

    # --- append (group commit) ---------------------------------------------------------

    async def append(self, record: Record, sinks_mask: int) -> None:
        """Return once `record` is committed to disk; StoreFull at the byte/age limit."""
        await self.append_many(((record, sinks_mask),))

    async def append_many(self, items: Iterable[tuple[Record, int]]) -> None:
        """Commit several (record, sinks mask) pairs in one group; all or nothing.

        Returns once every record is durable. StoreFull when the spool is at its limit (checked
        once per call: a batch may overshoot the byte limit by its own size).
        """
        if self._closed:
            raise RuntimeError("spool is closed")
        if self.is_full():
            raise StoreFull(f"spool at its limit ({self.byte_count} of {self.max_bytes} bytes)")
        next_id = self._next_id
        rows: list[Row] = []
        size = 0
        routed = 0
        for record, mask in items:
            size += len(record.payload)
            routed |= mask
            # Record's fields are the row's columns, in order (model ... payload)
            rows.append((next_id, *record, mask))
            next_id += 1
        size += len(rows) * ROW_OVERHEAD_BYTES
        if not rows:
            return
        # Ids are taken now, in queue order, and commits run in queue order: ids stay increasing
        # in commit order (a failed commit leaves a gap, never a reuse).
        self._next_id = next_id
        loop = asyncio.get_running_loop()
        if self._committer is None:
            self._wake = asyncio.Event()
            # Without the committer no append returns: no frame is ACKed.
            self._committer = self.supervisor.spawn("spool-committer", self._run_committer, critical=True)
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((rows, size, future, routed))
        self._pending_rows += len(rows)
        self._pending_bytes += size
        assert self._wake is not None
        self._wake.set()
        await future

    def _take_group(self) -> list[tuple[list[Row], int, asyncio.Future[None], int]]:
        count = 0
        taken = 0
        for rows, _, _, _ in self._pending:
            if taken and count + len(rows) > self.max_commit_records:
                break
            count += len(rows)
            taken += 1
        group = self._pending[:taken]
        del self._pending[:taken]
        self._pending_rows -= count
        return group

    async def _run_committer(self) -> None:
        """The commit loop, made safe to restart: a crash fails the waiters of the group it was
        committing (their devices get BUSY and retransmit) instead of leaving them waiting."""
        assert self._wake is not None
        self._wake.set()  # appends queued while the loop was down
        try:
            await self._commit_loop()
        except Exception as exc:
            self._drop_tail()  # the group may be committed without being in the tail
            for future in self._committing:
                if not future.done():
                    future.set_exception(RuntimeError(f"spool committer failed: {exc}"))
            raise
        finally:
            self._committing = []

    async def _commit_loop(self) -> None:
        """Classic group commit: one commit (one fsync) in flight at a time.

        A commit starts as soon as something is queued and no commit is running; whatever is
        appended while it runs forms the next group. So a group grows with the load, and at low
        load an append waits about one fsync (not a timer). `commit_interval_s` > 0 adds a
        minimum spacing between the starts of two commits (fewer, larger groups).
        """
        assert self._wake is not None
        interval = self.commit_interval_s
        while True:
            await self._wake.wait()
            self._wake.clear()
            if interval > 0:  # optional minimum spacing: later appends join this group
                delay = self._last_commit + interval - time.monotonic()
                if delay > 0 and self._pending_rows < self.max_commit_records and not self._closed:
                    await asyncio.sleep(delay)
            if not self._pending and not self._dirty_cursors:
                if self._closed:
                    return
                continue
            group = self._take_group()
            self._committing = [entry[2] for entry in group]
            cursors, self._dirty_cursors = self._dirty_cursors, {}
            rows = [row for entry in group for row in entry[0]]
            group_bytes = sum(entry[1] for entry in group)
            self._last_commit = time.monotonic()
            try:
                await self._writer.run(self._write, rows, cursors)
            except Exception as exc:
                self._drop_tail()  # committed or not: the database knows, the tail does not
                self._pending_bytes -= group_bytes
                full = _is_disk_full(exc)
                if not full:
                    self._healthy = False
                    log.error("spool commit failed: %s", exc)
                error: BaseException = StoreFull(f"disk full: {exc}") if full else exc
                for _, _, future, _ in group:
                    if not future.done():
                        future.set_exception(error)
                # Cursor updates are idempotent: keep them for the next commit.
                for name, cursor in cursors.items():
                    self._dirty_cursors.setdefault(name, cursor)
            else:
                if rows:
                    self._tail += rows
                    if len(self._tail) > TAIL_ROWS:
                        self._trim_tail()
                self._healthy = True
                self.metrics.commit_seconds.observe(time.monotonic() - self._last_commit)
                self._pending_bytes -= group_bytes
                self.record_count += len(rows)
                self.byte_count += group_bytes
                if self._oldest_recv_ms is None and rows:
                    self._oldest_recv_ms = rows[0][6]
                routed = 0
                for _, _, future, mask in group:
                    routed |= mask
                    if not future.done():
                        future.set_result(None)
                if rows:
                    for bits, callback in self._commit_listeners:
                        if routed & bits:
                            callback()
            if self._pending or (self._closed and self._dirty_cursors):
                self._wake.set()
            elif self._closed:
                return

    def _write(self, rows: list[Row], cursors: dict[str, int]) -> None:
        # No 'last_id' here: while a row is in the table max(id) says it, and the transaction
        # that deletes rows records it (_delete_confirmed): a page less per commit.
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                conn.executemany(f"INSERT INTO records({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            if cursors:
                conn.executemany(
                    "UPDATE sinks SET cursor = ? WHERE name = ?",
                    [(c, n) for n, c in cursors.items()],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # --- confirmation and deletion -----------------------------------------------------

    def confirm(self, sink: str, cursor: int) -> None:
        """The sink confirmed every record routed to it with id <= cursor (persisted lazily)."""
        if cursor > self.cursors.get(sink, 0):
            self.cursors[sink] = cursor
            self._dirty_cursors[sink] = cursor
            self._collect_due = True

    async def collect(self) -> int:
        """Persist cursors and delete records every routed sink confirmed. Returns rows deleted."""
        if not self._collect_due:
            return 0
        self._collect_due = False
        cursors, self._dirty_cursors = self._dirty_cursors, {}
        snapshot = dict(self.cursors)
        tail = self._tail
        last_id = tail[-1][0] if tail else self._tail_floor
        try:
            deleted, freed, oldest = await self._writer.run(
                self._delete_confirmed, cursors, snapshot, last_id
            )
        except Exception:
            self._collect_due = True
            for name, cursor in cursors.items():
                self._dirty_cursors.setdefault(name, cursor)
            raise
        self.record_count -= deleted
        self.byte_count -= freed
        self._oldest_recv_ms = oldest
        self._forget_confirmed(snapshot)
        return deleted

    def _forget_confirmed(self, cursors: Mapping[str, int]) -> None:
        """Drop the tail's head rows that every sink they are routed to confirmed."""
        tail = self._tail
        # As in _delete_confirmed: between two sorted cursors a row is done when it is routed to
        # none of the sinks whose cursor is below it. Rows past the highest cursor never are.
        done = 0
        pending = 0
        for cursor, bit in sorted((cursors.get(name, 0), 1 << bit) for name, bit in self.bits.items()):
            end = bisect.bisect_right(tail, cursor, key=_row_id)
            index = done
            if not pending:
                index = max(done, end)
            while index < end and not tail[index][8] & pending:
                index += 1
            done = index
            if index < end:  # a row still owed to a sink further behind
                break
            pending |= bit
        if done:
            self._tail_floor = max(self._tail_floor, tail[done - 1][0])
            del tail[:done]

    def _delete_confirmed(
        self, cursors: dict[str, int], snapshot: dict[str, int], last_id: int
    ) -> tuple[int, int, int | None]:
        """Delete rows whose every routed sink's cursor is at or past them.

        Sorted cursors c1 <= c2 <= ... cut the id space into ranges. In (c(j-1), c(j)] the sinks
        with cursor < id are exactly sinks 1..j-1: a row there is done when it is routed to none
        of them. One range-scan DELETE per range. Records 'last_id' (at least the highest
        committed id) in the same transaction, so the ids taken at open stay above every id ever
        used even when the table is empty (an id used again would sit below a cursor and never
        be sent).
        """
        conn = self._conn
        ordered = sorted((snapshot.get(name, 0), bit) for name, bit in self.bits.items())
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "UPDATE sinks SET cursor = ? WHERE name = ?", [(c, n) for n, c in cursors.items()]
            )
            deleted = freed = 0
            lower, pending_mask = 0, 0
            for cursor, bit in ordered:
                if cursor > lower:
                    where = "id > ? AND id <= ? AND (sinks & ?) = 0"
                    args = (lower, cursor, pending_mask)
                    n, size = conn.execute(
                        f"SELECT count(*), coalesce(sum(length(payload)), 0) FROM records WHERE {where}",
                        args,
                    ).fetchone()
                    if n:
                        conn.execute(f"DELETE FROM records WHERE {where}", args)
                        deleted += n
                        freed += size + n * ROW_OVERHEAD_BYTES
                    lower = cursor
                pending_mask |= 1 << bit
            if deleted:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_id', ?)", (last_id,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return deleted, freed, self._query_oldest()

    # --- shutdown ----------------------------------------------------------------------

    async def close(self) -> None:
        """Commit what is pending, persist cursors, release the database."""
        if self._closed:
            return
        self._closed = True
        if self._committer is not None:
            assert self._wake is not None
            self._wake.set()
            await self._committer
        with contextlib.suppress(Exception):
            await self.collect()
        await self._writer.run(self._conn.close)
        self._writer.stop()

    # --- inspection (tests, tools) -----------------------------------------------------

    def iter_rows(self) -> Iterable[Row]:
        """All spooled rows in id order (a fresh read connection; safe while running)."""
        conn = sqlite3.connect(self.path)
        try:
            yield from conn.execute(f"SELECT {_COLUMNS} FROM records ORDER BY id")
        finally:
            conn.close()
