"""Sans-IO protocol state of one device connection, as h11's `Connection` is for an HTTP one.

Bytes in, with the time they arrived: `receive_data` answers with the frames to store, the bytes
to send now (the ACKs of authentic frames that are refused) and whether to stop reading or close.
The store's statuses in: `stored` answers with the ACKs. A session owns the PROXY preface, the
frame stream, the rate-limit bucket, the deadlines, the calls to the verifier and its frames in
flight. The sessions of one server share a `SessionContext`: the settings, the verifier, the
metrics, the keys of the frames in flight on any connection (a retransmission can race its
original from another connection) and the connections per source address.

No sockets, no event loop, time is a parameter: the I/O layer (server.DeviceConnection) moves
bytes, runs the timers, and pauses, resumes and closes when a session says so.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from .codec import build_ack
from .config import ServerConfig
from .connection_limits import ConnectionDeadlines, SourceCounts, Timeouts
from .metrics import IngestMetrics
from .protocol import AckStatus, FrameType, Reject
from .proxy_protocol import ProxyHeaderError, parse_proxy_header
from .stream import FrameStream
from .verifier import Verdict, Verifier

log = logging.getLogger("nanogridata.server")

# Retransmissions of one frame answered when its original is stored; more are dropped unanswered
# (a device resends one frame at a time: more copies in flight are a replaying client).
RACING_ANSWERS_PER_FRAME: Final = 4
SOURCE_LIMIT: Final = "max_connections_per_source"

# Enum members bound once: an attribute lookup on an enum class costs about a microsecond.
_OK: Final = int(AckStatus.OK)
_DUPLICATE_STATUS: Final = int(AckStatus.DUPLICATE)
_COMMAND: Final = int(FrameType.COMMAND)
_BAD_MAGIC: Final = Reject.BAD_MAGIC
_BAD_MAC: Final = Reject.BAD_MAC
_DUPLICATE: Final = Reject.DUPLICATE
_RATE_LIMITED: Final = Reject.RATE_LIMITED
_BUSY: Final = Reject.BUSY


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SessionContext:
    """What the sessions of one server share."""

    __slots__ = (
        "burst",
        "clock_ms",
        "config",
        "inflight_keys",
        "metrics",
        "racing",
        "sources",
        "timeouts",
        "verifier",
    )

    def __init__(
        self,
        config: ServerConfig,
        verifier: Verifier,
        metrics: IngestMetrics,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.config = config
        self.verifier = verifier
        self.metrics = metrics
        self.clock_ms = clock_ms  # wall clock: the timestamp window, the records, the ACKs
        self.sources = SourceCounts(config.max_connections_per_source)
        self.burst = float(config.rate_limit_burst)  # one float object for every session's bucket
        self.timeouts = Timeouts(config.idle_timeout_s, config.frame_timeout_s, config.write_stall_timeout_s)
        # Frames on their way to the store, on any connection: a copy that arrives meanwhile is
        # not stored twice.
        self.inflight_keys: set[int] = set()
        # Retransmissions that arrived while their original was on its way to the store (a device
        # that reconnected after an ACK timeout): answered when the original's store returns.
        # Unanswered, the device would wait out another ACK timeout and reconnect once more.
        self.racing: dict[int, list[tuple[DeviceSession, Verdict]]] = {}


class Received:
    """What one read asks of the I/O layer, in this order: send `reply`; store `frames` (then
    hand their statuses to `DeviceSession.stored` and the frames to `release`); stop reading when
    `hold`; close (abort when `abort`) when `close` names why."""

    __slots__ = ("abort", "close", "frames", "hold", "read_at", "received_ms", "reply")

    def __init__(
        self,
        frames: list[Verdict],
        reply: bytes,
        hold: bool = False,
        close: str | None = None,
        abort: bool = False,
        read_at: float = 0.0,
        received_ms: int = 0,
    ) -> None:
        self.frames = frames  # accepted by the verifier, now in flight
        self.reply = reply  # ACKs to send now (authentic frames refused: STALE, DUPLICATE, INVALID)
        self.hold = hold  # this connection's frames in flight reached max_inflight
        self.close = close
        self.abort = abort  # no graceful close (the connection was refused)
        self.read_at = read_at  # time.perf_counter() at the read: ACK latency runs from here
        self.received_ms = received_ms  # wall clock at the read: the records' arrival time

    def __repr__(self) -> str:
        return (
            f"Received(frames={len(self.frames)}, reply={len(self.reply)} bytes, hold={self.hold}, "
            f"close={self.close!r}, abort={self.abort})"
        )


NOTHING: Final = Received([], b"")  # a read that completed nothing (shared: never modified)


class DeviceSession:
    """The protocol state of one device connection (see the module docstring)."""

    __slots__ = (
        "_closing",
        "_ctx",
        "_last_refill",
        "_peer",
        "_proxy_buf",
        "_stream",
        "_tokens",
        "deadlines",
        "inflight",
        "owner",
        "source",
    )

    def __init__(self, ctx: SessionContext, peer: Any = None, owner: Any = None) -> None:
        self._ctx = ctx
        self._peer = peer  # given, or declared by a PROXY header; else the owner's `peername()`
        self.owner = owner  # the I/O layer's object of this connection: ACKs owed to it go there
        self.source: str | None = None  # the address counted in ctx.sources
        self._stream: FrameStream | None = None  # made by the first bytes: idle devices cost less
        self._proxy_buf: bytes | None = b"" if ctx.config.proxy_protocol != "off" else None
        self._tokens = ctx.burst  # spent once per read
        self._last_refill = 0.0
        self._closing = False  # a close was asked for: nothing more is read
        self.deadlines = ConnectionDeadlines(0.0)
        self.inflight = 0  # frames of this connection on their way to the store

    @property
    def peer(self) -> Any:
        """The device's address; behind a proxy, the one its PROXY header declares. Else asked of
        the owner (the I/O layer) when needed, not kept: an (address, port) tuple per idle
        connection is about 150 bytes, the whole of what the session itself costs."""
        if self._peer is None and self.owner is not None:
            return self.owner.peername()
        return self._peer

    @peer.setter
    def peer(self, value: Any) -> None:
        self._peer = value

    # --- connection -----------------------------------------------------------------------------
    def open(self, now: float) -> str | None:
        """The connection is up (`peer` known). Counts it against its source address, unless a
        PROXY header is due to name the source first. Returns why it is refused (abort it), or None."""
        self._last_refill = now
        self.deadlines = ConnectionDeadlines(now, partial=self._proxy_buf is not None)
        return None if self._proxy_buf is not None else self._admit()

    def _admit(self) -> str | None:
        peer = self.peer
        source = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        # Interned: the connections from one address share one string (it is kept as long as
        # one of them, or the count in ctx.sources, refers to it; then it is freed).
        source = sys.intern(source)
        if not self._ctx.sources.add(source):
            self._ctx.metrics.reject_connection(SOURCE_LIMIT)
            return SOURCE_LIMIT
        self.source = source
        return None

    def closed(self) -> None:
        """The connection is gone: its source slot is free again."""
        if self.source is not None:
            self._ctx.sources.remove(self.source)
            self.source = None

    # --- reading --------------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> Received:
        """Bytes read at `now` (the event loop's clock): what to do about them."""
        ctx = self._ctx
        ctx.metrics.bytes_received += len(data)
        if self._closing:
            return NOTHING
        completed = False
        if self._proxy_buf is not None:
            buf = self._proxy_buf + data
            refused = None
            try:
                # The parser refuses a header longer than max_buffer_bytes as soon as its length
                # is known, so at most that much is held, however the header is split.
                parsed = parse_proxy_header(buf, ctx.config.proxy_protocol, ctx.config.max_buffer_bytes)
            except ProxyHeaderError as exc:
                ctx.metrics.reject_connection("proxy_header")
                parsed, refused = None, f"PROXY header: {exc}"
            if parsed is None:
                self.deadlines.read(now, completed=False, partial=True)
                if refused is not None:
                    self._closing = True
                    return Received([], b"", close=refused)
                self._proxy_buf = buf
                return NOTHING
            consumed, source = parsed
            if source is not None:
                self.peer = source
            self._proxy_buf = None
            # Behind a proxy, the declared client is the source (LOCAL health checks: the proxy).
            refused = self._admit()
            if refused is not None:
                self.deadlines.read(now, completed=False, partial=True)
                self._closing = True
                return Received([], b"", close=refused, abort=True)
            data = buf[consumed:]
            completed = True
        stream = self._stream
        if stream is None:
            stream = self._stream = FrameStream()
        items = stream.feed(data) if data else []
        self.deadlines.read(now, completed=completed or bool(items), partial=stream.in_frame)
        got = self._frames(items, now) if items else NOTHING
        # Only what is left unparsed is held; the frames completed by this read are already out.
        if stream.buffered > ctx.config.max_buffer_bytes:
            ctx.metrics.reject(Reject.BUFFER_OVERFLOW)
            if got is NOTHING:
                got = Received([], b"")
            got.close = "buffer overflow"
        if got.close is not None:
            self._closing = True
        return got

    def _refill(self, now: float, rate: float) -> float:
        """Token bucket: refill for the time since the last read; the tokens now available.
        Every frame of a read arrived at the same time, so it is refilled once per read."""
        tokens = self._tokens + (now - self._last_refill) * rate
        burst = self._ctx.burst
        self._last_refill = now
        return tokens if tokens < burst else burst

    def _frames(self, items: list[bytes | Reject], now: float) -> Received:
        """Verify the frames of one read; answer the refused ones, keep the accepted ones in flight."""
        ctx = self._ctx
        perf = time.perf_counter
        t_read = perf()
        now_ms = ctx.clock_ms()
        verify = ctx.verifier.verify
        metrics = ctx.metrics
        reject = metrics.reject
        inflight_keys = ctx.inflight_keys
        received = metrics.frames_received
        rate = ctx.config.rate_limit_per_s
        tokens = self._refill(now, rate) if rate > 0 else 0.0
        accepted: list[Verdict] = []
        replies: list[bytes] = []
        close = None
        frames = 0
        for item in items:
            if isinstance(item, str):
                reject(item)
                if item == _BAD_MAGIC:  # the stream ends here: no way to find the next frame
                    close = "bad magic"
                    break
                continue
            frames += 1
            if rate > 0:
                if tokens < 1.0:
                    reject(_RATE_LIMITED)
                    continue
                tokens -= 1.0
            verdict = verify(item, now_ms)
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
                    reject(_DUPLICATE)
                    waiting = ctx.racing.setdefault(key, [])
                    if len(waiting) < RACING_ANSWERS_PER_FRAME:
                        waiting.append((self, verdict))
                else:
                    inflight_keys.add(key)
                    accepted.append(verdict)
            else:
                reject(reason)
                if reason == _BAD_MAC:
                    metrics.mac_failure(model)
                elif reason == _DUPLICATE:
                    metrics.replay(model)
                status = verdict.status
                if status is not None:
                    v = verdict
                    replies.append(
                        build_ack(v.mac or v.key, model, v.device_id, v.seq, now_ms, status, v.tag_len)
                    )
                    metrics.frame_acked(model, v.frame_type, status)
        if rate > 0:
            self._tokens = tokens
        if frames:
            metrics.frames_total += frames
            # Timed per read, not per frame (two clock reads and a histogram update per frame
            # were 3% of the hot path): each frame of the read counts the read's mean.
            metrics.processing.observe_many((perf() - t_read) / frames, frames)
        hold = False
        if accepted:
            self.inflight += len(accepted)
            hold = self.inflight >= ctx.config.max_inflight
        reply = b"".join(replies) if replies else b""
        return Received(accepted, reply, hold, close, False, t_read, now_ms)

    # --- the store's answer -----------------------------------------------------------------------
    def stored(
        self, frames: Sequence[Verdict], statuses: Sequence[int], now_ms: int
    ) -> tuple[bytes, list[tuple[DeviceSession, bytes]]]:
        """The store's status of each of `frames` (accepted by one `receive_data`), in order: the
        ACKs for this device, and the ACKs owed to retransmissions that raced these frames (on
        any connection: send them after this device's). An OK frame is marked in the replay
        window only now, so a BUSY one stays retransmittable; the caller flushes the replay
        journal before it sends anything."""
        ctx = self._ctx
        metrics = ctx.metrics
        mark = ctx.verifier.replay.mark
        acked = metrics.frames_acked  # metrics.frame_acked, inlined (once per frame)
        racing = ctx.racing
        late: list[tuple[DeviceSession, bytes]] = []
        acks = []
        ok = 0
        for v, status in zip(frames, statuses, strict=True):
            model, ftype, device, seq = v.model_id, v.frame_type, v.device_id, v.seq
            if racing:
                waiting = racing.pop((model << 64) | (device << 32) | seq, None)
                if waiting:
                    late += _answer_racing(waiting, status, now_ms, acked)
            if status == _OK:
                ok += 1
                mark(model, device, seq)
                if ftype == _COMMAND:
                    self._command(v)
            else:
                metrics.reject(_BUSY)
            acks.append(build_ack(v.mac or v.key, model, device, seq, now_ms, status, v.tag_len))
            counter = (model, ftype, status)
            acked[counter] = acked.get(counter, 0) + 1
        metrics.frames_acked_ok += ok
        return b"".join(acks), late

    def release(self, frames: Sequence[Verdict]) -> bool:
        """`frames` are no longer in flight (call it whether or not the store returned). True when
        this connection's frames in flight are below half of max_inflight: it may be read again."""
        ctx = self._ctx
        discard = ctx.inflight_keys.discard
        racing = ctx.racing
        for v in frames:
            key = (v.model_id << 64) | (v.device_id << 32) | v.seq
            discard(key)
            if racing:
                racing.pop(key, None)  # unanswered only when the store raised
        self.inflight -= len(frames)
        return self.inflight < ctx.config.max_inflight // 2 + 1

    def _command(self, v: Verdict) -> None:
        """COMMAND frames are handled here (routed to the local handler): log + metric."""
        self._ctx.metrics.command(v.model_id)
        extra = {"model": f"0x{v.model_id:02x}", "device": v.device_id, "seq": v.seq}
        log.info("command received", extra=extra | {"payload": repr(v.value)})

    # --- deadlines ------------------------------------------------------------------------------
    def hold(self) -> None:
        """The server stopped reading for its own reasons (frames awaiting the store, a drain)."""
        self.deadlines.hold()

    def unhold(self, now: float) -> None:
        self.deadlines.release(now)

    def write_blocked(self, now: float) -> None:
        """The device does not read its ACKs (the write buffer is above its high mark)."""
        self.deadlines.write_blocked(now)

    def write_unblocked(self, now: float) -> None:
        self.deadlines.write_unblocked(now)

    def expired(self, now: float) -> str | None:
        """The deadline that has passed at `now` (connection_limits.CLOSE_REASONS), or None."""
        return self.deadlines.expired(now, self._ctx.timeouts, awaiting_store=self.inflight > 0)


def _answer_racing(
    waiting: list[tuple[DeviceSession, Verdict]],
    status: int,
    now_ms: int,
    acked: dict[tuple[int, int, int], int],
) -> list[tuple[DeviceSession, bytes]]:
    """The ACKs of retransmissions that raced their original: DUPLICATE once it is stored
    (what they would have heard a moment later), else the original's BUSY."""
    reply = _DUPLICATE_STATUS if status == _OK else status
    out = []
    for session, v in waiting:
        ack = build_ack(v.mac or v.key, v.model_id, v.device_id, v.seq, now_ms, reply, v.tag_len)
        out.append((session, ack))
        counter = (v.model_id, v.frame_type, reply)
        acked[counter] = acked.get(counter, 0) + 1
    return out
