"""`nanogridata-sim`: device simulator and load generator.

N devices, each on its own TCP connection, send authenticated frames at a total rate (paced every
1-5 ms, see pacing_tick; or as fast as their window allows with --rate 0) and keep every
unacknowledged frame. As the firmware (firmware/src/ngd_client.c) does: a frame without an ACK for
the ACK timeout means the connection is dead, so the device drops it, reconnects and resends every
unacknowledged frame; a frame answered BUSY is resent on the same connection after that timeout.
ACK latency runs from the write of a frame to its ACK, parsed and verified. Bounded: --duration
and --max-frames stop it (--stop-file too, for a caller that decides when sending ends), --drain-s
bounds the wait for the last ACKs. Reports sent/acked/duplicates/lost, throughput, ACK latency
percentiles and reconnect times (per lost connection: until TCP is connected again, and until the
first ACK after that; p50/p99/max, as failover drills need them); exits 1 when a frame stays
unacknowledged (lost), an ACK fails verification, or an ACK names a frame that was never sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import cbor2

from .keys import derive_device_key
from .protocol import (
    FLAG_LONG_TAG,
    HEADER,
    HEADER_LEN,
    LONG_TAG,
    MAGIC,
    VERSION,
    AckStatus,
    FrameType,
    unpack_header,
)
from .records import record_key
from .stream import FrameStream

_ACK = int(FrameType.ACK)
MAX_LATENCY_SAMPLES = 2_000_000
MAX_RECONNECT_SAMPLES = 1_000_000
MAX_WAITING_DEVICES = 10  # devices listed in the report when frames stay unacknowledged


def percentile_ms(ordered: list[float], p: float, digits: int = 3) -> float | None:
    """The p-th percentile (nearest rank) of sorted samples in seconds, in milliseconds."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, digits)


def make_payload(profile: str, device_id: int) -> bytes:
    """A telemetry payload for a profile: pressure | gas | multi | bytes:N (exactly N bytes)."""
    if profile == "pressure":
        return cbor2.dumps({"p": 1013.25, "t": 21.5, "bat": 3712})
    if profile == "gas":
        return cbor2.dumps({"co2": 415, "voc": 0.125, "ok": True})
    if profile == "multi":
        return cbor2.dumps({"temp": -4.75, "hum": 55, "lux": 70000, "pm25": 12.3, "fw": "1.4.2"})
    if profile.startswith("bytes:"):
        size = int(profile.split(":", 1)[1])
        base: dict[str, Any] = {"p": 1013.25, "t": 21.5, "dev": device_id, "pad": ""}
        pad = size - len(cbor2.dumps(base))
        for _ in range(3):  # the text header grows by a byte at 24 and 256: converge
            base["pad"] = "x" * max(0, pad)
            pad += size - len(cbor2.dumps(base))
        data = cbor2.dumps(base)
        if len(data) != size:
            raise ValueError(f"cannot make a {size}-byte payload (minimum about 30)")
        return data
    raise ValueError(f"unknown payload profile {profile!r}")


def pacing_tick(rate: float) -> float:
    """Seconds between two sends of the open-loop pacer (closed loop, rate <= 0: the period of
    the retransmission checks). Each tick sends what the rate owes since the previous one: a tick
    of 1/rate, kept between 1 and 5 ms, so at 10,000 frames/s about 10 frames leave every
    millisecond rather than 50 in one burst every 5 ms (whose last frame waited for the gateway
    to get through the whole burst: not a steady rate)."""
    if rate <= 0:
        return 0.005
    return min(0.005, max(0.001, 1.0 / rate))


class OpenLoopPacer:
    """What each device owes at a tick of the open-loop sender (sans-IO: the caller passes the
    clock). A late tick owes the time it missed, so the rate holds over the run; frames that do
    not divide evenly go round-robin, so no device is favoured."""

    def __init__(self, rate: float, devices: int, start: float) -> None:
        self.rate = rate
        self.devices = devices
        self.last = start
        self.carry = 0.0
        self.next_device = 0

    def allot(self, now: float) -> list[tuple[int, int]]:
        """(device index, frames) for the devices that owe frames now: only those, since at
        200 devices and 1 ms ticks most ticks owe a few frames, not one per device."""
        self.carry += self.rate * (now - self.last)
        self.last = now
        due = int(self.carry)
        self.carry -= due
        per, extra = divmod(due, self.devices)
        first = self.next_device
        self.next_device = (first + extra) % self.devices
        if per:
            return [(i, per + ((i - first) % self.devices < extra)) for i in range(self.devices)]
        return [((first + k) % self.devices, 1) for k in range(extra)]


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 5680
    devices: int = 10
    rate: float = 100.0  # total frames/s; 0 = closed loop (as fast as the window allows)
    duration_s: float = 10.0
    max_frames: int = 1_000_000
    model_id: int = 0x10
    secret: bytes = b""
    tag_len: int = 16
    profile: str = "pressure"
    window: int = 32  # unacked frames per device before it stops sending new ones
    ack_timeout_s: float = 2.0  # no ACK for this long: the connection is presumed dead
    connect_timeout_s: float = 5.0  # a connect not done by then is abandoned and retried
    drain_s: float = 10.0
    device_base: int = 1
    seq_start: int | None = None
    proxy: str = "off"
    connect_concurrency: int = 200
    raw_ack_size: int = 0  # >0: baseline mode against an echo server (count bytes, no ACK parsing)
    acked_out: str | None = None
    state_file: str | None = None  # persists the sequence high-water mark across runs
    stop_file: str | None = None  # sending ends early once this file exists
    seed: int = 1


@dataclass
class Stats:
    sent: int = 0  # distinct frames
    retransmits: int = 0
    ack_timeouts: int = 0  # connections dropped because a frame had no ACK in time
    acked: int = 0  # OK or DUPLICATE: the device may drop the frame
    ok: int = 0
    duplicates: int = 0
    busy: int = 0
    stale: int = 0
    invalid: int = 0
    bad_acks: int = 0
    unexpected_acks: int = 0
    late_acks: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    latencies: list[float] = field(default_factory=list)
    # Per connection lost while running: seconds until TCP is connected again, and until the first
    # ACK (OK or DUPLICATE) after that, i.e. until the device is really served again.
    tcp_reconnect_s: list[float] = field(default_factory=list)
    reconnect_s: list[float] = field(default_factory=list)


class SimDevice(asyncio.Protocol):
    def __init__(self, sim: Simulator, device_id: int, seq_start: int) -> None:
        self.sim = sim
        self.device_id = device_id
        self.key = derive_device_key(sim.cfg.secret, sim.cfg.model_id, device_id)
        self.payload = make_payload(sim.cfg.profile, device_id)
        self.next_seq = seq_start
        self.first_seq = seq_start
        # seq -> [frame, first send time, last send time, answered BUSY since]
        self.unacked: dict[int, list[Any]] = {}
        self.transport: asyncio.Transport | None = None
        self.stream = FrameStream()
        self.connected = asyncio.Event()
        self.raw_pending = 0
        self.down_since: float | None = None  # lost its connection at (perf_counter), until re-acked
        self.tcp_back = False  # connected again since down_since
        self.connects = 0
        self.last_ack = 0.0  # perf_counter of the last ACK, 0 before the first
        # Distinct timestamps per device: a time-series store deduplicating identical (series, ms)
        # samples (VictoriaMetrics with -dedup.minScrapeInterval=1ms) must keep every frame.
        self.last_ts = 0
        flags = FLAG_LONG_TAG if sim.cfg.tag_len == LONG_TAG else 0
        self._head = (MAGIC, VERSION, sim.cfg.model_id, 0x01, flags, len(self.payload), device_id)

    # --- frames --------------------------------------------------------------------------------
    def _build(self, count: int) -> tuple[bytes, list[list[Any]]]:
        magic, version, model, ftype, flags, n, dev = self._head
        ts = max(time.time_ns() // 1_000_000, self.last_ts + 1)
        out = []
        entries = []
        tag_len = self.sim.cfg.tag_len
        unacked = self.unacked
        for i in range(count):
            if i:
                ts += 1
            seq = self.next_seq
            self.next_seq = (seq + 1) & 0xFFFFFFFF
            body = HEADER.pack(magic, version, model, ftype, flags, n, dev, seq, ts) + self.payload
            frame = body + hmac.digest(self.key, body, "sha256")[:tag_len]
            entry = [frame, 0.0, 0.0, False]
            unacked[seq] = entry
            entries.append(entry)
            out.append(frame)
        self.last_ts = ts
        self.sim.stats.sent += count
        return b"".join(out), entries

    def send_new(self, count: int) -> None:
        """Send up to `count` new frames (window and budget permitting). Their latency is measured
        from the moment they are handed to the socket (after building them), not from the tick."""
        if self.transport is None or self.transport.is_closing():
            return
        room = self.sim.cfg.window - len(self.unacked)
        count = min(count, room, self.sim.budget)
        if count <= 0:
            return
        self.sim.budget -= count
        data, entries = self._build(count)
        t_write = time.perf_counter()
        for entry in entries:
            entry[1] = entry[2] = t_write
        self.transport.write(data)

    def resend_all(self, now: float) -> None:
        """After a reconnect: every unacknowledged frame again, in sequence order."""
        if self.transport is None or self.transport.is_closing() or not self.unacked:
            return
        for entry in self.unacked.values():
            entry[2] = now
            entry[3] = False
        self.sim.stats.retransmits += len(self.unacked)
        self.transport.write(b"".join(entry[0] for entry in self.unacked.values()))

    def check_acks(self, now: float) -> None:
        """A frame sent on this connection and not answered within the ACK timeout: the connection
        is dead (a peer that lost its address, a half-open socket): drop it, the reconnect resends
        everything. A frame answered BUSY is resent here once the timeout has passed."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        older_than = now - self.sim.cfg.ack_timeout_s
        busy = []
        for entry in self.unacked.values():
            if entry[2] > older_than:
                continue
            if not entry[3]:
                self.sim.stats.ack_timeouts += 1
                if self.down_since is None and not self.sim.stopping:
                    self.down_since = entry[2]  # not served since that frame was written
                    self.tcp_back = False
                transport.abort()
                return
            entry[2] = now
            entry[3] = False
            busy.append(entry[0])
        if busy:
            self.sim.stats.retransmits += len(busy)
            transport.write(b"".join(busy))

    # --- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.stream = FrameStream()
        self.connects += 1
        self.connected.set()
        if self.down_since is not None and not self.tcp_back:
            self.tcp_back = True
            self.sim.record_reconnect(self.sim.stats.tcp_reconnect_s, time.perf_counter() - self.down_since)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.connected.clear()
        if not self.sim.stopping and self.down_since is None:
            self.down_since = time.perf_counter()
            self.tcp_back = False
        self.sim.on_disconnect(self)

    def _served_again(self, now: float) -> None:
        """The first ACK after a lost connection: the reconnect is complete."""
        if self.down_since is not None:
            self.sim.record_reconnect(self.sim.stats.reconnect_s, now - self.down_since)
            self.down_since = None

    def data_received(self, data: bytes) -> None:
        sim = self.sim
        now = time.perf_counter()
        stats = sim.stats
        if sim.cfg.raw_ack_size:
            self.raw_pending += len(data)
            count = self.raw_pending // sim.cfg.raw_ack_size
            self.raw_pending -= count * sim.cfg.raw_ack_size
            for _ in range(count):
                if not self.unacked:
                    stats.unexpected_acks += 1
                    continue
                seq = next(iter(self.unacked))
                entry = self.unacked.pop(seq)
                stats.acked += 1
                stats.ok += 1
                sim.record_latency(now - entry[1])
                self._served_again(now)
            if sim.closed_loop and count:
                self.send_new(count)
            return
        freed = 0
        key = self.key
        tag_len = sim.cfg.tag_len
        device_id = self.device_id
        for item in self.stream.feed(data):
            if isinstance(item, str):
                stats.bad_acks += 1
                continue
            # Fast path of codec.verify_ack: an ACK is exactly header + `81 0s` + tag.
            body_end = HEADER_LEN + 2
            _, _, _, ftype, _, _, dev, ack_seq, _ = unpack_header(item)
            if (
                len(item) != body_end + tag_len
                or ftype != _ACK
                or item[HEADER_LEN] != 0x81
                or dev != device_id
                or not hmac.compare_digest(
                    hmac.digest(key, item[:body_end], "sha256")[:tag_len], item[body_end:]
                )
            ):
                stats.bad_acks += 1
                continue
            found = self.unacked.get(ack_seq)
            if found is None:
                if self._was_sent(ack_seq):
                    stats.late_acks += 1  # answer to a retransmission already acknowledged
                else:
                    stats.unexpected_acks += 1
                continue
            entry = found
            status = item[HEADER_LEN + 1]
            if status == AckStatus.BUSY:
                stats.busy += 1
                entry[2] = now  # resent on this connection after the ACK timeout
                entry[3] = True
                continue
            del self.unacked[ack_seq]
            freed += 1
            if status in (AckStatus.OK, AckStatus.DUPLICATE):
                self._served_again(now)
                self.last_ack = now
                stats.acked += 1
                if status == AckStatus.OK:
                    stats.ok += 1
                else:
                    stats.duplicates += 1
                # written to the socket -> this ACK read and verified
                sim.record_latency(time.perf_counter() - entry[1])
                if sim.acked_keys is not None:
                    sim.acked_keys.append(record_key(sim.cfg.model_id, self.device_id, ack_seq))
            elif status == AckStatus.STALE:
                stats.stale += 1
            else:
                stats.invalid += 1
        if sim.closed_loop and freed:
            self.send_new(freed)

    def waiting(self, now: float) -> dict[str, Any]:
        """Why this device still has unacknowledged frames: for the report of a failed run."""
        sock = self.transport.get_extra_info("sockname") if self.transport is not None else None
        return {
            "device": self.device_id,
            "unacked": len(self.unacked),
            "oldest_s": round(now - min(e[1] for e in self.unacked.values()), 1),
            "connected": self.transport is not None and not self.transport.is_closing(),
            "local_port": sock[1] if sock else None,
            "connects": self.connects,
            "last_ack_s": round(now - self.last_ack, 1) if self.last_ack else None,
        }

    def _was_sent(self, seq: int) -> bool:
        if self.first_seq <= self.next_seq:
            return self.first_seq <= seq < self.next_seq
        return seq >= self.first_seq or seq < self.next_seq  # wrapped


class Simulator:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.stats = Stats()
        self.closed_loop = cfg.rate <= 0
        self.budget = cfg.max_frames
        self.sending = True
        self.devices: list[SimDevice] = []
        self.acked_keys: list[str] | None = [] if cfg.acked_out else None
        self._rng = random.Random(cfg.seed)
        self._reconnects: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._lat_seen = 0
        self.waiting: list[dict[str, Any]] = []

    @property
    def stopping(self) -> bool:
        """The run is over: connections closing now are not lost ones."""
        return self._stopping

    def record_reconnect(self, samples: list[float], value: float) -> None:
        if len(samples) < MAX_RECONNECT_SAMPLES:
            samples.append(value)

    def record_latency(self, value: float) -> None:
        self._lat_seen += 1
        lat = self.stats.latencies
        if len(lat) < MAX_LATENCY_SAMPLES:
            lat.append(value)
        else:  # reservoir sampling keeps memory bounded
            j = self._rng.randrange(self._lat_seen)
            if j < MAX_LATENCY_SAMPLES:
                lat[j] = value

    def _proxy_header(self, index: int) -> bytes:
        if self.cfg.proxy == "v1":
            source = f"198.18.{index >> 8 & 255}.{index & 255}"
            return f"PROXY TCP4 {source} 127.0.0.1 {10000 + index % 50000} 5680\r\n".encode()
        return b""

    async def _connect(self, dev: SimDevice, index: int) -> bool:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: dev, self.cfg.host, self.cfg.port),
                self.cfg.connect_timeout_s,
            )
        except (OSError, TimeoutError):
            self.stats.connect_failures += 1
            return False
        header = self._proxy_header(index)
        if header:
            transport.write(header)
        return True

    def on_disconnect(self, dev: SimDevice) -> None:
        if self._stopping:
            return
        task = asyncio.get_running_loop().create_task(self._reconnect(dev))
        self._reconnects.add(task)
        task.add_done_callback(self._reconnects.discard)

    async def _reconnect(self, dev: SimDevice) -> None:
        delay = 0.05
        while not self._stopping:
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            if await self._connect(dev, self.devices.index(dev)):
                self.stats.reconnects += 1
                dev.resend_all(time.perf_counter())  # the firmware resends everything unacked
                return
            delay = min(delay * 2, 2.0)

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        seq_start = cfg.seq_start
        if seq_start is None:  # devices persist their sequence; a new run must start above the last
            seq_start = max(((int(time.time()) - 1_700_000_000) * 20) & 0xFFFFFFFF, self._saved_seq())
        self.devices = [SimDevice(self, cfg.device_base + i, seq_start) for i in range(cfg.devices)]
        sem = asyncio.Semaphore(cfg.connect_concurrency)

        async def connect(i: int, dev: SimDevice) -> None:
            async with sem:
                for _ in range(20):
                    if await self._connect(dev, i):
                        return
                    await asyncio.sleep(0.1)

        await asyncio.gather(*(connect(i, d) for i, d in enumerate(self.devices)))
        t0 = time.perf_counter()
        deadline = t0 + cfg.duration_s
        if self.closed_loop:
            for dev in self.devices:
                dev.send_new(cfg.window)
        tick = pacing_tick(cfg.rate)
        pacer = OpenLoopPacer(cfg.rate, len(self.devices), t0)
        last_retx = t0
        last_stop_check = t0
        while True:
            await asyncio.sleep(tick)
            now = time.perf_counter()
            if now >= deadline or self.budget <= 0:
                break
            if cfg.stop_file and now - last_stop_check >= 0.1:
                last_stop_check = now
                if os.path.exists(cfg.stop_file):
                    break
            if not self.closed_loop:
                for i, count in pacer.allot(now):
                    self.devices[i].send_new(count)
            if now - last_retx >= 0.25:
                last_retx = now
                for dev in self.devices:
                    dev.check_acks(now)
        t_send_end = time.perf_counter()
        self.sending = False
        self.budget = 0
        drain_deadline = t_send_end + cfg.drain_s
        while time.perf_counter() < drain_deadline and any(d.unacked for d in self.devices):
            await asyncio.sleep(0.05)
            now = time.perf_counter()
            for dev in self.devices:
                dev.check_acks(now)
        t_end = time.perf_counter()
        # Before the connections close: the devices still waiting, worst first (a failed run's clue).
        waiting = sorted((d for d in self.devices if d.unacked), key=lambda d: -len(d.unacked))
        self.waiting = [d.waiting(t_end) for d in waiting[:MAX_WAITING_DEVICES]]
        self._stopping = True
        for task in list(self._reconnects):
            task.cancel()
        for dev in self.devices:
            if dev.transport is not None:
                dev.transport.close()
        await asyncio.sleep(0.05)
        return self.report(t0, t_send_end, t_end)

    def _saved_seq(self) -> int:
        if not self.cfg.state_file:
            return 0
        try:
            return int(json.loads(Path(self.cfg.state_file).read_text())["next_seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def _save_seq(self) -> None:
        if self.cfg.state_file and self.devices:
            path = Path(self.cfg.state_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"next_seq": max(d.next_seq for d in self.devices)}))

    def report(self, t0: float, t_send_end: float, t_end: float) -> dict[str, Any]:
        self._save_seq()
        s = self.stats
        lost = sum(len(d.unacked) for d in self.devices)
        lat = sorted(s.latencies)
        rec = sorted(s.reconnect_s)
        tcp = sorted(s.tcp_reconnect_s)

        def pct(p: float) -> float | None:
            return percentile_ms(lat, p)

        send_s = max(t_send_end - t0, 1e-9)
        result = {
            "devices": self.cfg.devices,
            "duration_s": round(t_end - t0, 3),
            "send_phase_s": round(send_s, 3),
            "sent": s.sent,
            "retransmits": s.retransmits,
            "ack_timeouts": s.ack_timeouts,
            "acked": s.acked,
            "acked_ok": s.ok,
            "duplicates": s.duplicates,
            "busy": s.busy,
            "stale": s.stale,
            "invalid": s.invalid,
            "lost": lost,
            "bad_acks": s.bad_acks,
            "unexpected_acks": s.unexpected_acks,
            "late_acks": s.late_acks,
            "reconnects": s.reconnects,
            "connect_failures": s.connect_failures,
            "throughput_acked_per_s": round(s.acked / max(t_end - t0, 1e-9), 1),
            "throughput_send_phase_per_s": round(s.sent / send_s, 1),
            "latency_ms": {
                "p50": pct(50),
                "p90": pct(90),
                "p99": pct(99),
                "p999": pct(99.9),
                "max": pct(100),
            },
            # Lost connection -> first ACK after reconnecting (count, percentiles); never_reacked:
            # devices still waiting for that ACK at the end (e.g. nothing left to send).
            "reconnect_ms": {
                "count": len(rec),
                "p50": percentile_ms(rec, 50, 1),
                "p99": percentile_ms(rec, 99, 1),
                "max": percentile_ms(rec, 100, 1),
                "never_reacked": sum(1 for d in self.devices if d.down_since is not None),
                "tcp_count": len(tcp),
                "tcp_p50": percentile_ms(tcp, 50, 1),
                "tcp_p99": percentile_ms(tcp, 99, 1),
            },
        }
        if self.waiting:
            result["waiting_devices"] = self.waiting
        if self.acked_keys is not None and self.cfg.acked_out:
            Path(self.cfg.acked_out).write_text("".join(k + "\n" for k in self.acked_keys))
        return result


def _load_secret(args: argparse.Namespace, model_id: int) -> bytes:
    text = args.secret_hex or os.environ.get(f"NANOGRIDATA_SECRET_MODEL_{model_id:02X}")
    if not text and args.config:
        from .config import load_config  # noqa: PLC0415

        cfg = load_config(args.config, args.secrets, parse_delivery=False)
        return cfg.models[model_id].master_secret
    if not text:
        raise SystemExit(
            "nanogridata-sim: no model secret: use --secret-hex, $NANOGRIDATA_SECRET_MODEL_XX "
            "or --config/--secrets"
        )
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise SystemExit(f"nanogridata-sim: the model secret is not hex ({exc})") from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="nanogridata-sim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5680, help="gateway data port (or nginx's device port)")
    ap.add_argument("--devices", type=int, default=10, help="simulated devices, one connection each")
    ap.add_argument("--rate", type=float, default=100.0, help="total new frames per second; 0 = closed loop")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of sending (bounded: max 3600)")
    ap.add_argument("--max-frames", type=int, default=1_000_000, help="stop after this many new frames")
    ap.add_argument(
        "--stop-file",
        help="stop sending as soon as this file exists (checked every 0.1 s; --duration still bounds)",
    )
    ap.add_argument("--model", default="0x10", help="model id")
    ap.add_argument("--tag-len", type=int, choices=(16, 32), default=16)
    ap.add_argument("--profile", default="pressure", help="pressure | gas | multi | bytes:N")
    ap.add_argument("--window", type=int, default=32, help="max unacked frames per device")
    ap.add_argument(
        "--ack-timeout", type=float, default=2.0,
        help="a frame without an ACK for this long: drop the connection, reconnect, resend",
    )  # fmt: skip
    ap.add_argument("--connect-timeout", type=float, default=5.0, help="abandon a connect after this")
    ap.add_argument("--drain", type=float, default=10.0, help="max seconds to wait for the last ACKs")
    ap.add_argument("--device-base", type=int, default=1, help="first device id")
    ap.add_argument(
        "--seq-start",
        type=int,
        help="first sequence number (default: derived from the clock "
        "and --state-file, so reruns continue above earlier runs)",
    )
    ap.add_argument(
        "--state-file",
        default=str(
            Path(os.environ.get("NGD_CACHE", Path.home() / ".cache" / "nanogridata")) / "sim-state.json"
        ),
        help="where the sequence high-water mark is kept",
    )
    ap.add_argument("--proxy", choices=("off", "v1"), default="off", help="send a PROXY v1 header")
    ap.add_argument("--raw-ack-size", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--acked-out", help="write the idempotency keys of acknowledged frames here")
    ap.add_argument(
        "--secret-hex", help="model master secret (else $NANOGRIDATA_SECRET_MODEL_XX or --config)"
    )
    ap.add_argument("-c", "--config", help="gateway config to read the model secret from")
    ap.add_argument("--secrets", help="secrets file for --config")
    ap.add_argument("--json", action="store_true", help="print the report as one JSON object")
    ap.add_argument("--no-uvloop", action="store_true")
    return ap


def exit_code(report: dict[str, Any]) -> int:
    """1 when a frame was never acknowledged, or an ACK was forged or names an unsent frame."""
    return 1 if report["lost"] or report["bad_acks"] or report["unexpected_acks"] else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    model_id = int(args.model, 0)
    if not 0 < args.duration <= 3600 or args.devices < 1 or args.devices > 100_000 or args.max_frames < 0:
        raise SystemExit("nanogridata-sim: --duration must be in (0, 3600], --devices in [1, 100000]")
    cfg = SimConfig(
        host=args.host,
        port=args.port,
        devices=args.devices,
        rate=args.rate,
        duration_s=args.duration,
        max_frames=args.max_frames,
        model_id=model_id,
        secret=_load_secret(args, model_id),
        tag_len=args.tag_len,
        profile=args.profile,
        window=args.window,
        ack_timeout_s=args.ack_timeout,
        connect_timeout_s=args.connect_timeout,
        drain_s=args.drain,
        device_base=args.device_base,
        seq_start=args.seq_start,
        proxy=args.proxy,
        raw_ack_size=args.raw_ack_size,
        acked_out=args.acked_out,
        state_file=args.state_file or None,
        stop_file=args.stop_file,
    )
    make_payload(cfg.profile, 0)  # fail early on a bad profile
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop  # noqa: PLC0415

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    report = asyncio.run(Simulator(cfg).run())
    if args.json:
        print(json.dumps(report))
    else:
        for name, value in report.items():
            print(f"{name:28} {value}")
    if exit_code(report):
        print(
            f"nanogridata-sim: FAILED: lost={report['lost']} bad_acks={report['bad_acks']} "
            f"unexpected_acks={report['unexpected_acks']}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
