"""What every sink shares: the sink interface, error classes, metrics, dead letters, and the
worker that batches spooled records, delivers them with bounded concurrency and retries, and
confirms them to the spool in order."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..delivery_config import SinkConfig
from ..records import Record
from ..spool import Row, Spool, idempotency_key, row_to_record, wait_event
from .formats import Unencodable, json_record

log = logging.getLogger(__name__)

# A sink that keeps failing logs one line per interval, not one per batch.
WARN_INTERVAL_S = 10.0


class RetryableError(Exception):
    """Deliver again later (timeout, connection refused, 5xx, 408/429)."""

    def __init__(self, error_class: str, detail: str) -> None:
        super().__init__(f"{error_class}: {detail}")
        self.error_class = error_class


class PermanentError(Exception):
    """The sink refused the data itself (4xx): retrying cannot help, dead-letter it."""

    def __init__(self, error_class: str, status: int, detail: str) -> None:
        super().__init__(f"{error_class} {status}: {detail}")
        self.error_class = error_class
        self.status = status
        self.detail = detail


class Sink(Protocol):
    name: str

    def encode(self, row: Row) -> bytes | None:
        """The spooled record's fragment of a batch body; None when this sink has no field it can
        store, formats.Unencodable (with the reason) when it cannot represent the record."""
        ...

    async def deliver(self, fragments: Sequence[bytes], keys: Sequence[str]) -> None:
        """Send one batch; return on confirmation, raise RetryableError / PermanentError."""
        ...

    async def close(self) -> None: ...


@dataclass
class SinkMetrics:
    delivered: Counter
    batches: Counter
    errors: Counter
    retries: Counter
    dead_letters: Counter
    last_success: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SinkMetrics:
        return cls(
            delivered=Counter(
                "nanogridata_sink_records_delivered",
                "Records confirmed by the sink",
                ["sink"],
                registry=registry,
            ),
            batches=Counter(
                "nanogridata_sink_batches",
                "Batches by result",
                ["sink", "result"],
                registry=registry,
            ),
            errors=Counter(
                "nanogridata_sink_errors",
                "Delivery errors by class",
                ["sink", "class"],
                registry=registry,
            ),
            retries=Counter("nanogridata_sink_retries", "Batch retries", ["sink"], registry=registry),
            dead_letters=Counter(
                "nanogridata_sink_dead_letters",
                "Records written to the dead-letter file",
                ["sink"],
                registry=registry,
            ),
            last_success=Gauge(
                "nanogridata_sink_last_success_timestamp_seconds",
                "Time of the last confirmed batch",
                ["sink"],
                registry=registry,
            ),
        )


class DeadLetters:
    """Append-only JSON-lines file per sink; fsynced before the records leave the spool."""

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, sink: str, reason: str, records: Sequence[Record]) -> None:
        """Append and fsync; raises OSError when the file cannot be written (the caller retries)."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        now = time.time()
        lines = [
            json.dumps(
                {
                    "deadLetteredAt": now,
                    "sink": sink,
                    "reason": reason,
                    "record": json_record(r, strict=False),  # a dead letter never refuses
                },
                separators=(",", ":"),
            )
            for r in records
        ]
        body = ("\n".join(lines) + "\n").encode()
        with open(self.path, "a+b") as handle:
            # A write cut short (disk full) leaves a torn last line: start on a fresh line so the
            # retried records stay one JSON object per line.
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    body = b"\n" + body
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())


@dataclass
class _Batch:
    end: int  # cursor position once this batch is confirmed
    rows: list[Row]


class SinkWorker:
    """Moves one sink's records from the spool to the sink.

    Reads batches past the sink's cursor (size-bounded; a partial batch waits up to
    batch_interval for more), keeps up to `concurrency` batches in flight, retries retryable
    failures with exponential backoff and jitter for as long as it runs, bisects a refused batch
    down to the records the sink refuses and dead-letters those, and advances the cursor only over
    a contiguous prefix of finished batches (so a crash re-sends, never skips).
    """

    def __init__(
        self,
        sink: Sink,
        config: SinkConfig,
        spool: Spool,
        metrics: SinkMetrics,
        dead_letters: DeadLetters,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.sink = sink
        self.config = config
        self.spool = spool
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.bit = spool.bits[sink.name]
        self._pool = pool
        self._new_data = asyncio.Event()
        self._stopping = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._order: collections.deque[int] = collections.deque()
        self._done: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_warning: dict[str, float] = {}
        name = sink.name
        self._m_delivered = metrics.delivered.labels(name)
        self._m_retries = metrics.retries.labels(name)
        self._m_dead = metrics.dead_letters.labels(name)
        self._m_last = metrics.last_success.labels(name)
        for result in ("ok", "retry", "dead_letter"):
            metrics.batches.labels(name, result)
        spool.add_commit_listener(self.bit, self._new_data.set)

    def start(self) -> None:
        # Restart is safe: _run re-reads from the confirmed cursor (at-least-once re-send), and
        # positions confirmed twice are a no-op for the spool.
        self._task = self.spool.supervisor.spawn(f"sink-{self.sink.name}", self._run)

    async def stop(self, grace_s: float) -> None:
        """Stop reading; give in-flight batches `grace_s` to finish, then cancel them."""
        self._stopping = True
        self._new_data.set()
        if self._task is not None:
            # The reader may be waiting for a free slot behind batches that retry forever.
            done, _ = await asyncio.wait({self._task}, timeout=grace_s)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # --- reading and dispatch ----------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # A run restarted after a crash starts over from the confirmed cursor: batches the crashed
        # run left in flight are re-sent (at least once), and its bookkeeping must not outlive it,
        # or a position it queued but never sent would hold the cursor back for good.
        for task in self._inflight:
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        self._order.clear()
        self._done.clear()
        reader = self.spool.reader()
        cfg = self.config
        interval_s = cfg.batch_interval_ms / 1000
        limit = asyncio.Semaphore(cfg.concurrency)
        read_pos = self.spool.cursors.get(self.sink.name, 0)
        try:
            while not self._stopping:
                await limit.acquire()
                if self._stopping:
                    limit.release()
                    break
                self._new_data.clear()
                # From memory while this sink keeps up; from the database when it is behind.
                got = self.spool.read_committed(read_pos, self.bit, cfg.batch_size)
                if got is None:
                    got = await loop.run_in_executor(
                        self._pool, reader.read, read_pos, self.bit, cfg.batch_size
                    )
                rows, scanned = got
                if rows and len(rows) < cfg.batch_size and interval_s > 0:
                    # Partial batch: let it fill for up to batch_interval after its oldest record.
                    wait = interval_s - (time.time() - rows[0][6] / 1000)
                    if wait > 0.001:
                        limit.release()
                        await asyncio.sleep(wait)
                        continue
                if not rows:
                    limit.release()
                    if scanned > read_pos:
                        self._order.append(scanned)
                        self._finish(scanned)
                        read_pos = scanned
                    if not self._stopping:
                        await wait_event(self._new_data, 1.0)
                    continue
                read_pos = scanned
                self._order.append(scanned)
                task = loop.create_task(self._send(_Batch(scanned, rows), limit))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
        finally:
            await loop.run_in_executor(self._pool, reader.close)

    def _finish(self, end: int) -> None:
        self._done.add(end)
        cursor = None
        while self._order and self._order[0] in self._done:
            cursor = self._order.popleft()
            self._done.discard(cursor)
        if cursor is not None:
            self.spool.confirm(self.sink.name, cursor)

    async def _send(self, batch: _Batch, limit: asyncio.Semaphore) -> None:
        """Deliver one batch until it is finished (delivered or durably dead-lettered). Whatever
        goes wrong, the batch is retried, never abandoned: an abandoned batch is one the cursor
        can never pass, so every later batch would be sent but never confirmed."""
        try:
            attempt = 0
            while True:
                try:
                    await self._process(batch.rows)
                except Exception as exc:
                    self.metrics.errors.labels(self.sink.name, "internal").inc()
                    delay = self._backoff(attempt)
                    attempt += 1
                    self._warn(
                        "internal",
                        "sink %s: batch failed (%s: %s); retrying %d records in %.2fs",
                        self.sink.name,
                        type(exc).__name__,
                        exc,
                        len(batch.rows),
                        delay,
                        exc_info=exc,
                    )
                    await asyncio.sleep(delay)
                else:
                    break
            self._finish(batch.end)
        finally:
            limit.release()

    async def _process(self, rows: list[Row]) -> None:
        loop = asyncio.get_running_loop()
        encoded = await loop.run_in_executor(self._pool, self._encode, rows)
        refused: dict[str, list[Record]] = {}
        items: list[tuple[Row, bytes]] = []
        for row, fragment in encoded:
            if isinstance(fragment, bytes):
                items.append((row, fragment))
            else:
                refused.setdefault(fragment, []).append(row_to_record(row))
        for reason, records in refused.items():
            await self._dead_letter(records, reason)
        if items:
            await self._deliver(items)

    def _backoff(self, attempt: int) -> float:
        """Seconds before retry number `attempt` + 1: exponential, capped, with 50-100 % jitter
        so a fleet does not retry in lockstep."""
        cfg = self.config
        backoff_ms = min(cfg.retry_max_ms, cfg.retry_initial_ms * float(2 ** min(attempt, 30)))
        return backoff_ms / 1000 * random.uniform(0.5, 1.0)

    def _warn(self, kind: str, message: str, *args: object, exc_info: BaseException | None = None) -> None:
        """A sink that keeps failing logs one line per interval and kind of failure, not one per
        attempt (per kind: a stuck dead-letter write is not hidden by a collector's 5xx)."""
        now = time.monotonic()
        if now - self._last_warning.get(kind, -WARN_INTERVAL_S) > WARN_INTERVAL_S:
            self._last_warning[kind] = now
            log.warning(message, *args, exc_info=exc_info)

    def _encode(self, rows: list[Row]) -> list[tuple[Row, bytes | str]]:
        """Each row's fragment, or the reason it cannot be sent (text)."""
        encode = self.sink.encode
        result: list[tuple[Row, bytes | str]] = []
        for row in rows:
            try:
                fragment = encode(row)
            except Unencodable as exc:
                result.append((row, f"unencodable: {exc}"))
                continue
            if fragment is None:
                result.append((row, "unencodable: no field this sink can store"))
            else:
                result.append((row, fragment))
        return result

    # --- delivery with retries ---------------------------------------------------------

    async def _deliver(self, items: list[tuple[Row, bytes]]) -> None:
        name = self.sink.name
        attempt = 0
        while True:
            try:
                await self.sink.deliver([f for _, f in items], [idempotency_key(row) for row, _ in items])
            except RetryableError as exc:
                self.metrics.errors.labels(name, exc.error_class).inc()
                self.metrics.batches.labels(name, "retry").inc()
                self._m_retries.inc()
                delay = self._backoff(attempt)
                self._warn("retry", "sink %s: %s; retrying %d records in %.2fs", name, exc, len(items), delay)
                attempt += 1
                await asyncio.sleep(delay)
            except PermanentError as exc:
                self.metrics.errors.labels(name, exc.error_class).inc()
                if len(items) > 1:
                    # Find the records the sink refuses; the others still go through.
                    half = len(items) // 2
                    await self._deliver(items[:half])
                    await self._deliver(items[half:])
                    return
                self.metrics.batches.labels(name, "dead_letter").inc()
                await self._dead_letter(
                    [row_to_record(items[0][0])], f"HTTP {exc.status}: {exc.detail[:200]}"
                )
                return
            else:
                self.metrics.batches.labels(name, "ok").inc()
                self._m_delivered.inc(len(items))
                self._m_last.set(time.time())
                return

    async def _dead_letter(self, records: list[Record], reason: str) -> None:
        """Return once the records are durably in the dead-letter file. A write that fails (disk
        full, read-only, a bad directory) is retried with backoff until it succeeds: the records
        may leave the spool only after their dead letter is on disk."""
        name = self.sink.name
        log.error("sink %s: dead-lettering %d records: %s", name, len(records), reason)
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                await loop.run_in_executor(self._pool, self.dead_letters.write, name, reason, records)
            except OSError as exc:
                self.metrics.errors.labels(name, "dead_letter_io").inc()
                delay = self._backoff(attempt)
                attempt += 1
                self._warn(
                    "dead_letter",
                    "sink %s: cannot write dead letters to %s (%s); %d records stay in the spool,"
                    " retrying in %.2fs",
                    name,
                    self.dead_letters.path,
                    exc,
                    len(records),
                    delay,
                )
                await asyncio.sleep(delay)
            else:
                break
        self._m_dead.inc(len(records))
