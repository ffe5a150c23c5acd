"""The asyncio ingest server: device connections in, ACKs out, records to the Store.

A thin shell around the sans-IO parts (stream splitter, verifier, PROXY parser): frames are
split and verified synchronously in `data_received`; the accepted frames of every read in one
event-loop iteration go to the Store as one batch, and each is answered OK only after the Store
returned. Bookkeeping is per read where it can be (one ACK write, one latency observation,
one in-flight update per read): at closed-loop load a read carries several frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from .codec import build_ack
from .config import ServerConfig
from .connection_limits import WRITE_STALL, ConnectionDeadlines, SourceCounts, Timeouts
from .metrics import IngestMetrics
from .protocol import AckStatus, FrameType
from .proxy_protocol import ProxyHeaderError, parse_proxy_header
from .records import Record, Store, StoreFull
from .replay import PersistentReplayGuard, ReplayWindows
from .stream import BAD_MAGIC, FrameStream
from .supervise import Supervisor
from .verifier import Verdict, Verifier

log = logging.getLogger("nanogridata.server")
# Retransmissions of one frame answered when its original is stored; more are dropped unanswered
# (a device resends one frame at a time: more copies in flight are a replaying client).
RACING_ANSWERS_PER_FRAME = 4
# Why reading is paused; it resumes when no reason is left.
_HELD = 1  # by the server: frames awaiting the store (max_inflight), or a drain
_WRITE_BLOCKED = 2  # by the device: its ACKs pile up unread above the write buffer's high mark


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Counters:
    """Plain counters for /stats (cheaper to read than the Prometheus registry)."""

    frames: int = 0
    acked_ok: int = 0
    rejected: int = 0
    connections_total: int = 0


class DeviceConnection(asyncio.Protocol):
    __slots__ = (
        "_closed",
        "_last_refill",
        "_paused",
        "_proxy_buf",
        "_stream",
        "deadlines",
        "inflight",
        "peer",
        "server",
        "source",
        "tokens",
        "transport",
    )

    def __init__(self, server: IngestServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self._stream = FrameStream()
        self._proxy_buf: bytes | None = b"" if server.config.proxy_protocol != "off" else None
        # Rate-limit bucket: refilled by refill(), spent by IngestServer.process once per read.
        self.tokens = float(server.config.rate_limit_burst)
        self._last_refill = 0.0
        self.deadlines = ConnectionDeadlines(0.0)
        self.source: str | None = None  # the address counted in IngestServer.sources
        self.inflight = 0
        self._paused = 0  # _HELD | _WRITE_BLOCKED
        self._closed = False

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        srv = self.server
        self.peer = transport.get_extra_info("peername")
        reason = None
        if srv.draining:
            reason = "draining"
        elif len(srv.connections) >= srv.config.max_connections:
            reason = "max_connections"
        if reason is not None:
            srv.metrics.reject_connection(reason)
            self._closed = True
            self.transport.abort()
            return
        if self._proxy_buf is None and not srv.admit_source(self, self.peer):
            self._closed = True
            return
        now = srv.loop.time()
        self._last_refill = now
        self.deadlines = ConnectionDeadlines(now, partial=self._proxy_buf is not None)
        srv.connections.add(self)
        srv.metrics.connections_total += 1
        srv.metrics.connections_active += 1
        srv.counters.connections_total += 1
        high = srv.config.max_write_buffer_bytes
        self.transport.set_write_buffer_limits(high=high, low=high // 4)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.server.connections:
            self.server.connections.discard(self)
            self.server.metrics.connections_active -= 1
        if self.source is not None:
            self.server.sources.remove(self.source)
            self.source = None
        self._closed = True

    def pause_writing(self) -> None:
        """The transport's buffer is above its high mark: the device is not reading its ACKs.
        Read no more frames (each would add an ACK); the sweep closes the connection if the
        device has not drained the buffer within write_stall_timeout_s."""
        self.deadlines.write_blocked(self.server.loop.time())
        self._pause(_WRITE_BLOCKED)

    def resume_writing(self) -> None:
        self.deadlines.write_unblocked(self.server.loop.time())
        self._resume(_WRITE_BLOCKED)

    def data_received(self, data: bytes) -> None:
        srv = self.server
        srv.metrics.bytes_received += len(data)
        now = srv.loop.time()
        completed = False
        if self._proxy_buf is not None:
            rest = self._proxy(data)
            if rest is None:
                self.deadlines.read(now, completed=False, partial=True)
                return
            data = rest
            completed = True
        stream = self._stream
        items = stream.feed(data) if data else []
        self.deadlines.read(now, completed=completed or bool(items), partial=stream.in_frame)
        if items:
            srv.process(self, items)
        # Only what is left unparsed is held; the frames completed by this read are already out.
        if stream.buffered > srv.config.max_buffer_bytes:
            srv.reject("buffer_overflow")
            self.close("buffer overflow")

    # --- helpers ---------------------------------------------------------------------------------
    def _proxy(self, data: bytes) -> bytes | None:
        """Bytes after the PROXY header once it is complete; None while it is not (or refused).
        The parser refuses a header longer than max_buffer_bytes as soon as its length is known,
        so at most that much is held, however the header is split."""
        assert self._proxy_buf is not None
        srv = self.server
        buf = self._proxy_buf + data
        try:
            parsed = parse_proxy_header(buf, srv.config.proxy_protocol, srv.config.max_buffer_bytes)
        except ProxyHeaderError as exc:
            srv.metrics.reject_connection("proxy_header")
            self.close(f"PROXY header: {exc}")
            return None
        if parsed is None:
            self._proxy_buf = buf
            return None
        consumed, source = parsed
        if source is not None:
            self.peer = source
        self._proxy_buf = None
        # Behind a proxy, the declared client is the source (LOCAL health checks: the proxy).
        if not srv.admit_source(self, self.peer):
            return None
        return buf[consumed:]

    def refill(self, now: float, rate: float) -> float:
        """Token bucket: refill for the time since the last read; the tokens now available.
        The caller takes one per frame and stores what is left in `tokens` (once per read:
        every frame of a read arrived at the same time)."""
        tokens = self.tokens + (now - self._last_refill) * rate
        burst = self.server.config.rate_limit_burst
        self._last_refill = now
        return tokens if tokens < burst else float(burst)

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
        self.deadlines.hold()
        self._pause(_HELD)

    def resume(self) -> None:
        if self._paused & _HELD:
            self.deadlines.release(self.server.loop.time())
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
        self.clock_ms = clock_ms
        self.connections: set[DeviceConnection] = set()
        self.sources = SourceCounts(config.max_connections_per_source)
        self.timeouts = Timeouts(config.idle_timeout_s, config.frame_timeout_s, config.write_stall_timeout_s)
        self.counters = Counters()
        self.draining = False
        self.drained = asyncio.Event()
        self.started_at = time.time()
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.base_events.Server | None = None
        self._inflight_keys: set[int] = set()
        # Retransmissions that arrived while their original was on its way to the store (a device
        # that reconnected after an ACK timeout): answered when the original's store returns.
        # Unanswered, the device would wait out another ACK timeout and reconnect once more.
        self._racing: dict[int, list[tuple[DeviceConnection, Verdict]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._drain_task: asyncio.Task[None] | None = None
        # accepted frames of this loop iteration, one entry per read: stored as one batch
        self._pending: list[_Read] = []
        self._append_many = getattr(store, "append_many", None)
        self.port = config.data_port
        self.supervisor = Supervisor.of(metrics.registry)
        replay = verifier.replay
        self._journal = replay if isinstance(replay, PersistentReplayGuard) else None
        metrics.replay_journal = self._journal
        metrics.ready_probe = self.is_ready

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
        replay = self.verifier.replay
        return {
            "uptime_s": round(time.time() - self.started_at, 3),
            "ready": self.is_ready(),
            "draining": self.draining,
            "connections_active": len(self.connections),
            "connections_total": self.counters.connections_total,
            "frames_received": self.counters.frames,
            "frames_acked_ok": self.counters.acked_ok,
            "frames_rejected": self.counters.rejected,
            "frames_in_flight": len(self._inflight_keys),
            "connections_write_blocked": sum(1 for c in self.connections if c.write_blocked),
            "write_buffered_bytes": sum(c.write_buffered for c in self.connections),
            "replay_devices": len(replay) if isinstance(replay, ReplayWindows) else None,
            "replay_journal_writable": None if self._journal is None else self._journal.writable,
            "unhealthy_tasks": self.supervisor.unhealthy(),
        }

    # --- connection accounting ---------------------------------------------------------------------
    def admit_source(self, conn: DeviceConnection, peer: Any) -> bool:
        """Count `conn` against its source address; refuse it (abort) when that address is at
        max_connections_per_source."""
        source = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        if not self.sources.add(source):
            self.metrics.reject_connection("max_connections_per_source")
            why = "max_connections_per_source"
            log.info("refusing connection", extra={"peer": _fmt_peer(peer), "why": why})
            if conn.transport is not None:
                conn.transport.abort()
            return False
        conn.source = source
        return True

    def expire_connections(self, now: float) -> None:
        """Close every connection whose deadline has passed (see connection_limits)."""
        timeouts = self.timeouts
        for conn in list(self.connections):
            reason = conn.deadlines.expired(now, timeouts, awaiting_store=conn.inflight > 0)
            if reason is not None:
                conn.expire(reason)

    # --- the frame path ---------------------------------------------------------------------------
    def reject(self, reason: str) -> None:
        self.metrics.rejected[reason] += 1
        self.counters.rejected += 1

    def process(self, conn: DeviceConnection, items: list[bytes | str]) -> None:
        """Verify the frames of one read; answer rejections now, queue accepted ones for the store."""
        perf = time.perf_counter
        t_read = perf()
        now_ms = self.clock_ms()
        now = self.loop.time()
        verifier = self.verifier
        metrics = self.metrics
        inflight_keys = self._inflight_keys
        received = metrics.frames_received
        rate = self.config.rate_limit_per_s
        tokens = conn.refill(now, rate) if rate > 0 else 0.0
        accepted: list[Verdict] = []
        frames = 0
        for item in items:
            if isinstance(item, str):
                self.reject(item)
                if item == BAD_MAGIC:
                    conn.close("bad magic")
                    break
                continue
            frames += 1
            if rate > 0:
                if tokens < 1.0:
                    self.reject("rate_limited")
                    continue
                tokens -= 1.0
            verdict = verifier.verify(item, now_ms)
            model = verdict.model_id
            if model >= 0:
                counter = (model, verdict.frame_type)  # counted here, once per frame (hot path)
                received[counter] = received.get(counter, 0) + 1
            reason = verdict.reason
            if reason is None:
                key = (model << 64) | (verdict.device_id << 32) | verdict.seq
                if key in inflight_keys:
                    # Same frame already on its way to the store (a retransmission racing its
                    # original): answered DUPLICATE (or BUSY) once the original's store returns.
                    self.reject("duplicate")
                    waiting = self._racing.setdefault(key, [])
                    if len(waiting) < RACING_ANSWERS_PER_FRAME:
                        waiting.append((conn, verdict))
                else:
                    inflight_keys.add(key)
                    accepted.append(verdict)
            else:
                self.reject(reason)
                if reason == "bad_mac":
                    metrics.mac_failure(verdict.model_id)
                elif reason == "duplicate":
                    metrics.replay(verdict.model_id)
                if verdict.status is not None:
                    self._ack(conn, verdict, verdict.status, now_ms)
        if rate > 0:
            conn.tokens = tokens
        if frames:
            self.counters.frames += frames
            # Timed per read, not per frame (two clock reads and a histogram update per frame
            # were 3% of the hot path): each frame of the read counts the read's mean.
            metrics.processing.observe_many((perf() - t_read) / frames, frames)
        if accepted:
            conn.inflight += len(accepted)
            if conn.inflight >= self.config.max_inflight:
                conn.pause()
            self._pending.append((conn, accepted, t_read, now_ms))
            if len(self._pending) == 1:  # first in this loop iteration: flush after the reads
                self.loop.call_soon(self._flush_pending)

    def _flush_pending(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            task = self.loop.create_task(self._store_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _ack(self, conn: DeviceConnection, v: Verdict, status: int, now_ms: int) -> None:
        conn.send(build_ack(v.mac or v.key, v.model_id, v.device_id, v.seq, now_ms, status, v.tag_len))
        self.metrics.frame_acked(v.model_id, v.frame_type, status)

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
            mark = self.verifier.replay.mark
            acked = self.metrics.frames_acked  # metrics.frame_acked, inlined (once per frame)
            observe_many = self.metrics.ack_latency.observe_many
            ack_ms = self.clock_ms()
            t_ack = time.perf_counter()
            status_ok = int(AckStatus.OK)
            command = int(FrameType.COMMAND)
            ok = 0
            index = 0
            writes: list[tuple[DeviceConnection, bytes]] = []  # one write per read
            racing = self._racing
            answers_to_racing: list[tuple[DeviceConnection, bytes]] = []
            for conn, verdicts, t_read, _ in batch:
                acks = []
                for v in verdicts:
                    status = statuses[index]
                    index += 1
                    model, ftype, device, seq = v.model_id, v.frame_type, v.device_id, v.seq
                    if racing:
                        waiting = racing.pop((model << 64) | (device << 32) | seq, None)
                        if waiting:
                            answers_to_racing += self._answer_racing(waiting, status, ack_ms)
                    if status == status_ok:
                        ok += 1
                        mark(model, device, seq)  # only now: a BUSY frame stays retransmittable
                        if ftype == command:
                            self._command(v)
                    else:
                        self.reject("busy")
                    acks.append(build_ack(v.mac or v.key, model, device, seq, ack_ms, status, v.tag_len))
                    counter = (model, ftype, status)
                    acked[counter] = acked.get(counter, 0) + 1
                writes.append((conn, b"".join(acks)))
                observe_many(t_ack - t_read, len(verdicts))  # the frames of one read share their latency
            self._flush_replay()  # the replay marks reach the journal before the device hears OK
            for conn, data in writes:
                conn.send(data)
            for conn, data in answers_to_racing:  # after the original's own ACK
                conn.send(data)
            self.counters.acked_ok += ok
        finally:
            resume_below = self.config.max_inflight // 2 + 1
            discard = self._inflight_keys.discard
            racing = self._racing
            for conn, verdicts, _, _ in batch:
                for v in verdicts:
                    key = (v.model_id << 64) | (v.device_id << 32) | v.seq
                    discard(key)
                    if racing:
                        racing.pop(key, None)  # unanswered only when the store raised
                conn.inflight -= len(verdicts)
                if conn.inflight < resume_below and not self.draining:
                    conn.resume()

    def _answer_racing(
        self, waiting: list[tuple[DeviceConnection, Verdict]], status: int, ack_ms: int
    ) -> list[tuple[DeviceConnection, bytes]]:
        """The ACKs of retransmissions that raced their original: DUPLICATE once it is stored
        (what they would have heard a moment later), else the original's BUSY."""
        reply = AckStatus.DUPLICATE if status == AckStatus.OK else status
        acked = self.metrics.frames_acked
        out = []
        for conn, v in waiting:
            out.append(
                (conn, build_ack(v.mac or v.key, v.model_id, v.device_id, v.seq, ack_ms, reply, v.tag_len))
            )
            counter = (v.model_id, v.frame_type, int(reply))
            acked[counter] = acked.get(counter, 0) + 1
        return out

    def _command(self, v: Verdict) -> None:
        """COMMAND frames are handled here (routed to the local handler): log + metric."""
        self.metrics.command(v.model_id)
        extra = {"model": f"0x{v.model_id:02x}", "device": v.device_id, "seq": v.seq}
        log.info("command received", extra=extra | {"payload": repr(v.value)})

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
