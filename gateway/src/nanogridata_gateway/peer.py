"""Replay state shared by the pair: each gateway tells its peer which (model, device, seq) it
accepted, so a frame accepted on A and replayed (or retransmitted) to B gets DUPLICATE from B.

Wire format (HTTP on the private network, port `ngd_gateway_peer_port`):
    POST /v1/replay-state
    X-Nanogridata-Node:      sender's node name
    X-Nanogridata-Time:      sender's clock, ms since the Unix epoch
    X-Nanogridata-Signature: hex HMAC-SHA256(pair secret, "nanogridata-peer/v1\\n" node "\\n" time
                             "\\n" body)
    body: entries of 9 bytes each, big-endian: model (u8), device id (u32), seq (u32)

Every header is checked for its exact form before anything else (node: 1-64 of
[A-Za-z0-9._-]; time: 1-16 ASCII digits; signature: 64 lower-case hex digits): a malformed one gets
400. A request whose signature does not verify gets 401, one older or newer than MAX_SKEW_S gets 403
(a captured request cannot be replayed later; replaying it within the window only re-marks the
same entries, which is harmless). Only then is the body split into entries: a length that is not
a multiple of 9 gets 400, more than the receiver's `max_batch` entries 413.

Signed entries are still sanity-checked, because one wrong entry would hold for good: a mark
moves the device's window, and every lower sequence is a duplicate from then on. An entry may
advance a window this gateway holds by at most MAX_SEQ_ADVANCE; for a device it holds no window
for, it may not fall into the last MAX_SEQ_ADVANCE sequence numbers. Refused entries are counted
(`nanogridata_peer_sync_entries_refused_total{reason}`) and the request still answers 200, so the
sender does not retry them for ever.

Entries are sent batched every `batch_interval_ms` (≤ 1 s lag); an empty request every
HEARTBEAT_S keeps `nanogridata_peer_sync_up` truthful when idle.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import re
import struct
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from .delivery_config import NODE_NAME_RE, PeerConfig
from .records import ReplayGuard
from .spool import wait_event
from .supervise import Supervisor

# aiohttp is imported where it is used: only a gateway with a peer runs this module's HTTP server
# and client, and aiohttp costs a gateway without a peer megabytes of resident memory for nothing.
if TYPE_CHECKING:
    import aiohttp
    from aiohttp import web

log = logging.getLogger(__name__)

PATH = "/v1/replay-state"
ENTRY = struct.Struct(">BII")
MAX_SKEW_S = 30.0
HEARTBEAT_S = 1.0
_DOMAIN = b"nanogridata-peer/v1\n"
SEQ_MAX = 0xFFFFFFFF
# How far one peer entry may move a device's window: 2^24 frames is over six months of a frame a
# second, far more than a device sends while its gateways are apart (the sender queues entries
# while the peer is down), and 1/256 of the sequence space, so a stray entry cannot end a device.
MAX_SEQ_ADVANCE = 1 << 24
_TIME_RE = re.compile(r"[0-9]{1,16}")  # ms since the epoch: 13 digits until the year 2286
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")


class PeerRequestError(Exception):
    """A peer request refused before any entry was applied; `status` is the HTTP answer."""

    def __init__(self, status: int, reason: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.reason = reason
        self.text = text


class _HttpErrorLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger: a request that is not valid HTTP (junk, a header over 8 KiB, no
    Host) becomes one warning line and a count, not an ERROR with a traceback. Exceptions of our
    own handler keep their traceback: those are bugs."""

    def __init__(self, refused: Counter, peer: str) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._refused = refused
        self._peer = peer

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        from aiohttp.http_exceptions import HttpProcessingError  # noqa: PLC0415 - see the note at the imports

        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            self._refused.labels(self._peer, "bad_http").inc()
            first_line = (str(exc.message).strip().splitlines() or [""])[0]
            self.logger.log(
                min(level, logging.WARNING),
                "%s: bad HTTP: %s",
                str(msg) % args if args else msg,
                first_line[:200],
            )
            return
        super().log(level, msg, *args, **kwargs)


def check_headers(headers: Mapping[str, str]) -> tuple[str, int, str]:
    """(node, time_ms, signature) when every header has its exact form; else PeerRequestError(400).

    ASCII only, and lengths bounded before any conversion: a value like "²" passes str.isdigit
    but not int(), and a 5,000-digit time would be converted at a cost the sender chooses."""
    node = headers.get("X-Nanogridata-Node", "")
    time_text = headers.get("X-Nanogridata-Time", "")
    signature = headers.get("X-Nanogridata-Signature", "")
    if not NODE_NAME_RE.fullmatch(node):
        raise PeerRequestError(400, "bad_header", "missing or bad X-Nanogridata-Node (1-64 of A-Za-z0-9._-)")
    if not _TIME_RE.fullmatch(time_text):
        raise PeerRequestError(400, "bad_header", "missing or bad X-Nanogridata-Time (1-16 ASCII digits)")
    if not _SIGNATURE_RE.fullmatch(signature):
        raise PeerRequestError(
            400, "bad_header", "missing or bad X-Nanogridata-Signature (64 lower-case hex digits)"
        )
    return node, int(time_text), signature


def check_request(
    secret: bytes, headers: Mapping[str, str], body: bytes, now_s: float, max_entries: int
) -> list[tuple[int, int, int]]:
    """The entries of an authentic, fresh, well-formed request; else PeerRequestError.

    Order: header forms (400) -> signature (401) -> clock skew (403) -> body (400, 413). Nothing
    of the body is interpreted before its signature verified."""
    node, time_ms, signature = check_headers(headers)
    if not hmac.compare_digest(sign(secret, node, time_ms, body).encode(), signature.encode()):
        raise PeerRequestError(401, "bad_signature", "bad signature")
    if abs(now_s - time_ms / 1000) > MAX_SKEW_S:
        raise PeerRequestError(403, "skew", f"request time outside ±{MAX_SKEW_S:g}s")
    if len(body) % ENTRY.size:
        raise PeerRequestError(400, "bad_body", f"body length not a multiple of {ENTRY.size}")
    if len(body) // ENTRY.size > max_entries:
        raise PeerRequestError(413, "too_many", f"more than {max_entries} entries (peer.max_batch)")
    return list(ENTRY.iter_unpack(body))


def entry_refusal(top: int | None, seq: int) -> str | None:
    """Why a signed entry must not be applied to a window whose highest sequence is `top`
    (None: no window for the device yet), or None when it may."""
    if top is None:
        return "seq_end" if seq > SEQ_MAX - MAX_SEQ_ADVANCE else None
    return "seq_jump" if seq > top + MAX_SEQ_ADVANCE else None


def sign(secret: bytes, node: str, time_ms: int, body: bytes) -> str:
    message = _DOMAIN + node.encode() + b"\n" + str(time_ms).encode() + b"\n" + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


class PeerSync:
    """The replay guard of a gateway with a peer (a `records.ReplayGuard` around `wrapped`): a
    frame this gateway marks is queued for the peer, and what the peer accepted is marked in
    `wrapped` directly (so it is not sent back). Built where the gateway is assembled and given to
    the verifier in place of the windows it wraps; the store never sees it."""

    # `seen` and `top` are the wrapped guard's own bound methods: the verifier asks `seen` for
    # every frame, and a delegating method would add a call to that path for nothing.
    seen: Callable[[int, int, int], bool]
    top: Callable[[int, int], int | None]

    def __init__(
        self,
        config: PeerConfig,
        replay: ReplayGuard,
        registry: CollectorRegistry,
        models: Collection[int] | None = None,
    ) -> None:
        """`models`: the model ids this gateway serves; entries of any other model are refused
        (None: every model, for tests of the exchange alone)."""
        self.config = config
        self.wrapped = replay
        self.seen = replay.seen
        self.top = replay.top
        self._mark = replay.mark
        self._models = None if models is None else frozenset(models)
        self.supervisor = Supervisor.of(registry)
        label = config.peer_name
        self._up = Gauge(
            "nanogridata_peer_sync_up",
            "1 when the last exchange with the peer succeeded",
            ["peer"],
            registry=registry,
        ).labels(label)
        self._lag = Gauge(
            "nanogridata_peer_sync_lag_seconds",
            "Age of the oldest accepted entry not yet confirmed by the peer",
            ["peer"],
            registry=registry,
        ).labels(label)
        self._failures = Counter(
            "nanogridata_peer_sync_failures",
            "Failed exchanges with the peer",
            ["peer"],
            registry=registry,
        ).labels(label)
        self._sent = Counter(
            "nanogridata_peer_sync_entries_sent",
            "Entries confirmed by the peer",
            ["peer"],
            registry=registry,
        ).labels(label)
        self._received = Counter(
            "nanogridata_peer_sync_entries_received",
            "Entries received from the peer and applied",
            ["peer"],
            registry=registry,
        ).labels(label)
        self._refused_entries = Counter(
            "nanogridata_peer_sync_entries_refused",
            "Signed entries from the peer not applied: seq_jump (moves a window further than "
            "MAX_SEQ_ADVANCE), seq_end (a new device at the end of the sequence space), "
            "unknown_model (a model this gateway does not serve: its windows would only cost memory)",
            ["peer", "reason"],
            registry=registry,
        )
        self._refused_requests = Counter(
            "nanogridata_peer_sync_requests_refused",
            "Requests to the sync endpoint refused: bad_http, bad_header, bad_signature, skew, bad_body, "
            "too_many",
            ["peer", "reason"],
            registry=registry,
        )
        self._lag.set_function(self._oldest_age)
        # (model, device, seq, monotonic time accepted)
        self._queue: collections.deque[tuple[int, int, int, float]] = collections.deque()
        self._dropped = 0
        self._refused_total = 0
        self._is_up = False
        self._stop_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- outgoing ----------------------------------------------------------------------

    def mark(self, model_id: int, device_id: int, seq: int) -> None:
        """A frame this gateway stored: marked in the wrapped windows and queued for the peer."""
        self._mark(model_id, device_id, seq)
        self.accepted(model_id, device_id, seq)

    def accepted(self, model_id: int, device_id: int, seq: int) -> None:
        """Queue an entry for the peer (without marking it here)."""
        if len(self._queue) >= self.config.max_queue:
            # Peer down for long: keep the newest (replays are most likely for recent frames).
            self._queue.popleft()
            self._dropped += 1
            if self._dropped in (1, 1000) or self._dropped % 100_000 == 0:
                log.warning("peer sync queue full: %d oldest entries dropped", self._dropped)
        self._queue.append((model_id, device_id, seq, time.monotonic()))
        if len(self._queue) >= self.config.max_batch:
            self._wake.set()

    def _oldest_age(self) -> float:
        return time.monotonic() - self._queue[0][3] if self._queue else 0.0

    async def _send_loop(self) -> None:
        cfg = self.config
        interval = cfg.batch_interval_ms / 1000
        backoff = interval
        last_exchange = 0.0
        while not self._stopping:
            await wait_event(self._wake, interval)
            self._wake.clear()
            if not self._queue and time.monotonic() - last_exchange < HEARTBEAT_S:
                continue
            count = min(len(self._queue), cfg.max_batch)
            body = b"".join(ENTRY.pack(m, d, s) for m, d, s, _ in (self._queue[i] for i in range(count)))
            if await self._post(body):
                for _ in range(count):
                    self._queue.popleft()
                self._sent.inc(count)
                last_exchange = time.monotonic()
                backoff = interval
                if len(self._queue) >= cfg.max_batch:
                    self._wake.set()
            else:
                self._failures.inc()
                await wait_event(self._stop_event, backoff)
                backoff = min(5.0, backoff * 2)

    async def _post(self, body: bytes) -> bool:
        import aiohttp  # noqa: PLC0415 - see the note at the imports

        cfg = self.config
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=cfg.timeout_s))
        now_ms = int(time.time() * 1000)
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Nanogridata-Node": cfg.node_name,
            "X-Nanogridata-Time": str(now_ms),
            "X-Nanogridata-Signature": sign(cfg.secret, cfg.node_name, now_ms, body),
        }
        try:
            async with self._session.post(cfg.url + PATH, data=body, headers=headers) as response:
                ok = response.status == 200
                if not ok:
                    log.warning(
                        "peer %s answered HTTP %d: %s",
                        cfg.peer_name,
                        response.status,
                        (await response.text())[:200],
                    )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if self._is_up:  # log transitions, not every attempt
                log.warning("peer %s unreachable: %s", cfg.peer_name, exc or type(exc).__name__)
            ok = False
        self._is_up = ok
        self._up.set(1 if ok else 0)
        return ok

    # --- incoming ----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        from aiohttp import web  # noqa: PLC0415 - see the note at the imports

        try:
            check_headers(request.headers)  # junk is refused before its body is read
            body = await request.read()
            entries = check_request(
                self.config.secret, request.headers, body, time.time(), self.config.max_batch
            )
        except PeerRequestError as exc:
            self._refused_requests.labels(self.config.peer_name, exc.reason).inc()
            return web.Response(status=exc.status, text=exc.text + "\n")
        applied, refused = self.apply(entries)
        return web.Response(text=f"applied {applied} refused {refused}\n")

    def apply(self, entries: list[tuple[int, int, int]]) -> tuple[int, int]:
        """Mark the sane entries in the wrapped replay windows: (applied, refused)."""
        replay = self.wrapped
        applied = refused = 0
        models = self._models
        for model_id, device_id, seq in entries:
            if models is not None and model_id not in models:
                reason: str | None = "unknown_model"
            else:
                reason = entry_refusal(replay.top(model_id, device_id), seq)
            if reason is None:
                replay.mark(model_id, device_id, seq)
                applied += 1
            else:
                refused += 1
                self._refused_entries.labels(self.config.peer_name, reason).inc()
                self._refused_total += 1
                if self._refused_total in (1, 1000) or self._refused_total % 100_000 == 0:
                    log.warning(
                        "peer %s: entry refused (%s), %d so far: model %#04x device %d seq %d",
                        self.config.peer_name,
                        reason,
                        self._refused_total,
                        model_id,
                        device_id,
                        seq,
                    )
        self._received.inc(applied)
        return applied, refused

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        from aiohttp import web  # noqa: PLC0415 - see the note at the imports

        app = web.Application(client_max_size=ENTRY.size * self.config.max_batch + 1024)
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, logger=_HttpErrorLog(self._refused_requests, self.config.peer_name)
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.listen_host, self.config.listen_port, reuse_address=True)
        await site.start()
        self._up.set(0)
        self._task = self.supervisor.spawn("peer-sync", self._send_loop)

    async def close(self) -> None:
        """Stop; one last best-effort flush of what the peer has not confirmed yet."""
        self._stopping = True
        self._wake.set()
        self._stop_event.set()
        if self._task is not None:
            await self._task
        if self._queue:
            count = min(len(self._queue), self.config.max_batch)
            body = b"".join(ENTRY.pack(m, d, s) for m, d, s, _ in list(self._queue)[:count])
            if await self._post(body):
                for _ in range(count):
                    self._queue.popleft()
                self._sent.inc(count)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
