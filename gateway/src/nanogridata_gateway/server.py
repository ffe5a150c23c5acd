"""The asyncio ingest server: device connections in, ACKs out, records to the Store.

A thin shell around the sans-IO `session.DeviceSession`, which takes every protocol decision:
`DeviceConnection` hands it the bytes read and does what it answers (send, pause reading, close);
`IngestServer` listens, drains, and stores the accepted frames of every read in one event-loop
iteration as one batch, answering each only after the Store returned. Bookkeeping is per read
where it can be (one ACK write, one latency observation, one in-flight update per read): at
closed-loop load a read carries several frames.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from .config import ServerConfig
from .connection_limits import WRITE_STALL, SourceCounts, Timeouts
from .metrics import IngestMetrics
from .protocol import AckStatus
from .records import Record, ReplayGuard, Store, StoreFull
from .replay import PersistentReplayGuard, ReplayWindows
from .session import DeviceSession, Received, SessionContext
from .supervise import Supervisor
from .verifier import Verdict, Verifier

log = logging.getLogger("nanogridata.server")
# Why reading is paused; it resumes when no reason is left.
_HELD = 1  # by the server: frames awaiting the store (max_inflight), or a drain
_WRITE_BLOCKED = 2  # by the device: its ACKs pile up unread above the write buffer's high mark


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class DeviceConnection(asyncio.Protocol):
    """Moves one connection's bytes between its transport and its `DeviceSession`; pauses
    reading, resumes it and closes the transport when the session or the server says so."""

    __slots__ = ("_paused", "server", "session", "transport")

    def __init__(self, server: IngestServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.session = DeviceSession(server.sessions, owner=self)
        self._paused = 0  # _HELD | _WRITE_BLOCKED

    @property
    def peer(self) -> Any:
        return self.session.peer

    def peername(self) -> Any:
        """The device's address (asked of the transport each time: kept, it would cost a tuple
        per connection; the session asks for it when it counts the source and when a log names it)."""
        return self.transport.get_extra_info("peername") if self.transport is not None else None

    @property
    def inflight(self) -> int:
        return self.session.inflight

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        srv = self.server
        reason = None
        if srv.draining:
            reason = "draining"
        elif len(srv.connections) >= srv.config.max_connections:
            reason = "max_connections"
        if reason is not None:
            srv.metrics.reject_connection(reason)
            self.transport.abort()
            return
        refused = self.session.open(srv.loop.time())
        if refused is not None:
            self._refuse(refused)
            return
        srv.connections[self] = None
        srv.metrics.connections_total += 1
        srv.metrics.connections_active += 1
        high = srv.config.max_write_buffer_bytes
        self.transport.set_write_buffer_limits(high=high, low=high // 4)
        # No TCP_NODELAY here: uvloop and asyncio both set it on every accepted TCP socket, and
        # asking the transport for its socket would keep a socket object alive per connection.

    def connection_lost(self, exc: Exception | None) -> None:
        connections = self.server.connections
        if self in connections:
            del connections[self]
            self.server.metrics.connections_active -= 1
        self.session.closed()

    def pause_writing(self) -> None:
        """The transport's buffer is above its high mark: the device is not reading its ACKs.
        Read no more frames (each would add an ACK); the sweep closes the connection if the
        device has not drained the buffer within write_stall_timeout_s."""
        self.session.write_blocked(self.server.loop.time())
        self._pause(_WRITE_BLOCKED)

    def resume_writing(self) -> None:
        self.session.write_unblocked(self.server.loop.time())
        self._resume(_WRITE_BLOCKED)

    def data_received(self, data: bytes) -> None:
        got = self.session.receive_data(data, self.server.loop.time())
        if got.reply:
            self.send(got.reply)
        if got.frames:
            if got.hold:
                self.pause()
            self.server.queue(self, got)
        if got.close is not None:
            if got.abort:
                self._refuse(got.close)
            else:
                self.close(got.close)

    # --- helpers ---------------------------------------------------------------------------------
    def _refuse(self, why: str) -> None:
        log.info("refusing connection", extra={"peer": _fmt_peer(self.peer), "why": why})
        if self.transport is not None:
            self.transport.abort()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self, why: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            log.info("closing connection", extra={"peer": _fmt_peer(self.peer), "why": why})
            self.transport.close()

    def expire(self, reason: str) -> None:
        """A deadline passed. ACKs still buffered are dropped (the device retransmits and hears
        DUPLICATE): a graceful close would wait for a device that does not read."""
        transport = self.transport
        if transport is None:
            return
        self.server.metrics.close_connection(reason)
        if reason == WRITE_STALL or transport.is_closing() or transport.get_write_buffer_size():
            log.info("aborting connection", extra={"peer": _fmt_peer(self.peer), "why": reason})
            transport.abort()
        else:
            self.close(reason)

    @property
    def write_blocked(self) -> bool:
        return bool(self._paused & _WRITE_BLOCKED)

    @property
    def write_buffered(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def pause(self) -> None:
        """Stop reading for the server's own reasons (store back-pressure, drain)."""
        self.session.hold()
        self._pause(_HELD)

    def resume(self) -> None:
        if self._paused & _HELD:
            self.session.unhold(self.server.loop.time())
            self._resume(_HELD)

    def _pause(self, why: int) -> None:
        if self.transport is None:
            return
        if not self._paused and not self.transport.is_closing():
            self.transport.pause_reading()
        self._paused |= why

    def _resume(self, why: int) -> None:
        was = self._paused
        self._paused &= ~why
        if was and not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


# The accepted frames of one read: connection, verdicts, perf_counter at the read, receive time (ms).
_Read = tuple[DeviceConnection, list[Verdict], float, int]


def _windows(replay: ReplayGuard) -> ReplayGuard:
    """The replay windows themselves: the guard a `peer.PeerSync` wraps, or the guard as is
    (its journal is flushed before every ACK and its size is reported)."""
    wrapped: ReplayGuard = getattr(replay, "wrapped", replay)
    return wrapped


def _fmt_peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class IngestServer:
    """Owns the listening socket, the connections, the drain, and the verify → store → ACK flow."""

    def __init__(
        self,
        config: ServerConfig,
        verifier: Verifier,
        store: Store,
        metrics: IngestMetrics,
        *,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.config = config
        self.verifier = verifier
        self.store = store
        self.metrics = metrics
        self.sessions = SessionContext(config, verifier, metrics, clock_ms)
        # The open connections, a dict used as a set: a set's table at 5,000 entries is three
        # times the size of a dict's (a set grows fourfold at 60 % full, a dict threefold at 2/3).
        self.connections: dict[DeviceConnection, None] = {}
        self.draining = False
        self.drained = asyncio.Event()
        self.started_at = time.time()
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._drain_task: asyncio.Task[None] | None = None
        # accepted frames of this loop iteration, one entry per read: stored as one batch
        self._pending: list[_Read] = []
        self._append_many = getattr(store, "append_many", None)
        self.port = config.data_port
        self.supervisor = Supervisor.of(metrics.registry)
        replay = _windows(verifier.replay)
        self._journal = replay if isinstance(replay, PersistentReplayGuard) else None
        metrics.replay_journal = self._journal
        metrics.ready_probe = self.is_ready

    @property
    def clock_ms(self) -> Callable[[], int]:
        """The wall clock (ms) of the timestamp window, the records and the ACKs."""
        return self.sessions.clock_ms

    @clock_ms.setter
    def clock_ms(self, clock: Callable[[], int]) -> None:
        self.sessions.clock_ms = clock

    @property
    def sources(self) -> SourceCounts:
        return self.sessions.sources

    @property
    def timeouts(self) -> Timeouts:
        return self.sessions.timeouts

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await self.loop.create_server(
            lambda: DeviceConnection(self),
            self.config.data_host,
            self.config.data_port,
            reuse_port=self.config.reuse_port or None,
            backlog=4096,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        # Without the sweep idle connections stay open and the replay journal is never fsynced.
        self._sweeper = self.supervisor.spawn("ingest-sweep", self._sweep, critical=True)
        self.is_ready()
        log.info(
            "listening",
            extra={
                "host": self.config.data_host,
                "port": self.port,
                "proxy_protocol": self.config.proxy_protocol,
            },
        )

    def request_drain(self) -> bool:
        """Start a drain in the background; False when one is already running."""
        if self._drain_task is not None:
            return False
        self._drain_task = self.loop.create_task(self.drain())
        return True

    async def drain(self) -> None:
        """Stop accepting, finish in-flight frames (ACK them), close device connections."""
        if self.draining:
            await self.drained.wait()
            return
        self.draining = True
        self.metrics.draining = 1
        self.metrics.ready = 0
        log.info("drain started", extra={"connections": len(self.connections)})
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.pause()  # stop reading new frames; in-flight ones still get their ACK
        self._flush_pending()  # frames verified in this loop iteration are in flight too
        deadline = self.loop.time() + self.config.drain_timeout_s
        while self._tasks and self.loop.time() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - self.loop.time()))
        for conn in list(self.connections):
            conn.close("drain")
        self._flush_replay()
        if self._sweeper is not None:
            self._sweeper.cancel()
        log.info("drain finished", extra={"unfinished_batches": len(self._tasks)})
        self.drained.set()

    async def close(self) -> None:
        await self.drain()
        if self._server is not None:
            await self._server.wait_closed()

    # --- control plane (http_api.ControlTarget) ---------------------------------------------
    def is_alive(self) -> bool:
        return True

    def is_ready(self) -> bool:
        """Ready when a frame sent now would be stored and acknowledged honestly: not draining,
        the store accepts, the replay journal is writable, no critical task is down."""
        ready = (
            not self.draining
            and self._server is not None
            and self.store.is_ready()
            and (self._journal is None or self._journal.writable)
            and self.supervisor.healthy()
        )
        self.metrics.ready = 1 if ready else 0
        return ready

    @property
    def metrics_registry(self) -> Any:
        return self.metrics.registry

    def stats(self) -> dict[str, Any]:
        replay = _windows(self.verifier.replay)
        return {
            "uptime_s": round(time.time() - self.started_at, 3),
            "ready": self.is_ready(),
            "draining": self.draining,
            "connections_active": len(self.connections),
            "connections_total": self.metrics.connections_total,
            "frames_received": self.metrics.frames_total,
            "frames_acked_ok": self.metrics.frames_acked_ok,
            "frames_rejected": self.metrics.frames_rejected_total,
            "frames_in_flight": len(self.sessions.inflight_keys),
            "connections_write_blocked": sum(1 for c in self.connections if c.write_blocked),
            "write_buffered_bytes": sum(c.write_buffered for c in self.connections),
            "replay_devices": len(replay) if isinstance(replay, ReplayWindows) else None,
            "replay_journal_writable": None if self._journal is None else self._journal.writable,
            "unhealthy_tasks": self.supervisor.unhealthy(),
        }

    # --- connection accounting ---------------------------------------------------------------------
    def expire_connections(self, now: float) -> None:
        """Close every connection whose deadline has passed (see connection_limits)."""
        for conn in list(self.connections):
            reason = conn.session.expired(now)
            if reason is not None:
                conn.expire(reason)

    # --- the frame path ---------------------------------------------------------------------------
    def queue(self, conn: DeviceConnection, got: Received) -> None:
        """The accepted frames of one read: stored with the other reads of this loop iteration."""
        self._pending.append((conn, got.frames, got.read_at, got.received_ms))
        if len(self._pending) == 1:  # first in this loop iteration: flush after the reads
            self.loop.call_soon(self._flush_pending)

    def _flush_pending(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            task = self.loop.create_task(self._store_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _append_one(self, record: Record) -> int:
        try:
            await self.store.append(record)
        except StoreFull:
            return AckStatus.BUSY
        except Exception:
            log.exception("store append failed; answering BUSY", extra={"key": record.idempotency_key})
            return AckStatus.BUSY
        return AckStatus.OK

    async def _store(self, records: list[Record]) -> list[int]:
        """Hand records to the store; the ACK status of each."""
        if self._append_many is not None:  # one group commit for the whole batch (all or nothing)
            try:
                await self._append_many(records)
            except StoreFull:
                return [AckStatus.BUSY] * len(records)
            except Exception:
                log.exception("store append failed; answering BUSY", extra={"records": len(records)})
                return [AckStatus.BUSY] * len(records)
            return [AckStatus.OK] * len(records)
        if len(records) == 1:
            return [await self._append_one(records[0])]
        return list(await asyncio.gather(*(self._append_one(r) for r in records)))

    async def _store_batch(self, batch: list[_Read]) -> None:
        try:
            records = [
                Record(
                    v.model_id,
                    v.frame_type,
                    v.device_id,
                    v.seq,
                    v.timestamp_ms or received_ms,  # a clockless device: stamped on arrival
                    received_ms,
                    v.payload,
                )
                for _, verdicts, _, received_ms in batch
                for v in verdicts
            ]
            statuses = await self._store(records)
            observe_many = self.metrics.ack_latency.observe_many
            ack_ms = self.clock_ms()
            t_ack = time.perf_counter()
            index = 0
            writes: list[tuple[DeviceConnection, bytes]] = []  # one write per read
            answers_to_racing: list[tuple[DeviceSession, bytes]] = []
            for conn, verdicts, t_read, _ in batch:
                count = len(verdicts)
                acks, late = conn.session.stored(verdicts, statuses[index : index + count], ack_ms)
                index += count
                writes.append((conn, acks))
                if late:
                    answers_to_racing += late
                observe_many(t_ack - t_read, count)  # the frames of one read share their latency
            self._flush_replay()  # the replay marks reach the journal before the device hears OK
            for conn, data in writes:
                conn.send(data)
            for session, data in answers_to_racing:  # after the original's own ACK
                cast(DeviceConnection, session.owner).send(data)
        finally:
            for conn, verdicts, _, _ in batch:
                if conn.session.release(verdicts) and not self.draining:
                    conn.resume()

    def _flush_replay(self) -> None:
        """Journal the replay marks. Never raises: a disk error turns the journal unwritable
        (/ready 503) and the sweep repairs it; the frames are stored, so they are still ACKed."""
        if self._journal is not None:
            self._journal.flush()

    async def _sweep(self) -> None:
        """Close connections whose deadline passed (idle, frame, write stall); fsync (or repair)
        the replay journal; refresh the ready gauge."""
        t = self.timeouts
        interval = min(1.0, t.idle_s / 4, t.frame_s / 4, t.write_stall_s / 4)
        while True:
            await asyncio.sleep(interval)
            self.expire_connections(self.loop.time())
            journal = self._journal
            if journal is not None:
                journal.flush()
                # fsync can take long on a busy disk: never in the event loop
                await self.loop.run_in_executor(None, journal.fsync)
                if not journal.writable:
                    journal.repair()
            self.is_ready()
