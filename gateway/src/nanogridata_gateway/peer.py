"""Replay state shared by the pair: each gateway tells its peer which (model, device, seq) it
accepted, so a frame accepted on A and replayed (or retransmitted) to B gets DUPLICATE from B.

Wire format (HTTP on the private network, port `ngd_gateway_peer_port`):
    POST /v1/replay-state
    X-Nanogridata-Node:      sender's node name
    X-Nanogridata-Time:      sender's clock, ms since the Unix epoch
    X-Nanogridata-Signature: hex HMAC-SHA256(pair secret, "nanogridata-peer/v1\\n" node "\\n" time
                             "\\n" body)
    body: entries of 9 bytes each, big-endian: model (u8), device id (u32), seq (u32)

A request whose signature does not verify gets 401, one older or newer than MAX_SKEW_S gets 403
(a captured request cannot be replayed later; replaying it within the window only re-marks the
same entries, which is harmless). Entries are sent batched every `batch_interval_ms` (≤ 1 s lag);
an empty request every HEARTBEAT_S keeps `nanogridata_peer_sync_up` truthful when idle.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import struct
import time

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from .delivery_config import PeerConfig
from .records import ReplayGuard
from .spool import wait_event
from .supervise import Supervisor

log = logging.getLogger(__name__)

PATH = "/v1/replay-state"
ENTRY = struct.Struct(">BII")
MAX_SKEW_S = 30.0
HEARTBEAT_S = 1.0
_DOMAIN = b"nanogridata-peer/v1\n"


def sign(secret: bytes, node: str, time_ms: int, body: bytes) -> str:
    message = _DOMAIN + node.encode() + b"\n" + str(time_ms).encode() + b"\n" + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


class PeerSync:
    def __init__(self, config: PeerConfig, replay: ReplayGuard, registry: CollectorRegistry) -> None:
        self.config = config
        self.replay = replay
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
        self._lag.set_function(self._oldest_age)
        # (model, device, seq, monotonic time accepted)
        self._queue: collections.deque[tuple[int, int, int, float]] = collections.deque()
        self._dropped = 0
        self._is_up = False
        self._stop_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- outgoing ----------------------------------------------------------------------

    def accepted(self, model_id: int, device_id: int, seq: int) -> None:
        """Called for every record the local spool stored."""
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
        body = await request.read()
        node = request.headers.get("X-Nanogridata-Node", "")
        time_text = request.headers.get("X-Nanogridata-Time", "")
        signature = request.headers.get("X-Nanogridata-Signature", "")
        if not time_text.isdigit():
            return web.Response(status=401, text="missing or bad X-Nanogridata-Time")
        expected = sign(self.config.secret, node, int(time_text), body)
        if not hmac.compare_digest(expected, signature):
            return web.Response(status=401, text="bad signature")
        if abs(time.time() - int(time_text) / 1000) > MAX_SKEW_S:
            return web.Response(status=403, text=f"request time outside ±{MAX_SKEW_S:g}s")
        if len(body) % ENTRY.size:
            return web.Response(status=400, text=f"body length not a multiple of {ENTRY.size}")
        mark = self.replay.mark
        count = 0
        for model_id, device_id, seq in ENTRY.iter_unpack(body):
            mark(model_id, device_id, seq)
            count += 1
        self._received.inc(count)
        return web.Response(text=f"applied {count}\n")

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=ENTRY.size * self.config.max_batch + 1024)
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
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
