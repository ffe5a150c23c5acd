"""Every resource one device connection can make the gateway hold is bounded: the write buffer
(a device that reads no ACKs), the time a started frame or PROXY header may take, connections per
source address, the unparsed bytes held. The rules without sockets first, then real TCP clients
on loopback against an in-process gateway."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from nanogridata_gateway.codec import verify_ack
from nanogridata_gateway.config import ServerConfig, load_config
from nanogridata_gateway.connection_limits import (
    FRAME_TIMEOUT,
    IDLE_TIMEOUT,
    WRITE_STALL,
    ConnectionDeadlines,
    SourceCounts,
    Timeouts,
)
from nanogridata_gateway.errors import ConfigError
from nanogridata_gateway.http_api import MAX_CONNECTIONS, ControlServer
from nanogridata_gateway.protocol import AckStatus
from nanogridata_gateway.proxy_protocol import V2_SIGNATURE, ProxyHeaderError, parse_proxy_header
from nanogridata_gateway.stream import FrameStream
from test_config import EXAMPLE, MINIMAL, write_config, write_secrets
from test_server import metric, run

from ingest_support import Device, http_get, make_config, running_gateway, wait_until

T = Timeouts(idle_s=300.0, frame_s=5.0, write_stall_s=30.0)


def proxy_v2_with_tlvs(source: str, port: int, tlv_bytes: int) -> bytes:
    """A PROXY v2 TCP4 header whose address block is followed by `tlv_bytes` of TLVs (legal:
    nginx and HAProxy send e.g. unique ids and TLS details this way)."""
    addr = bytes(int(x) for x in source.split(".")) + bytes([10, 0, 0, 1]) + struct.pack(">HH", port, 5680)
    tlv = bytes([0xE0]) + struct.pack(">H", tlv_bytes - 3) + b"t" * (tlv_bytes - 3)  # 0xE0: custom type
    body = addr + tlv
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack(">H", len(body)) + body


# --- configuration -------------------------------------------------------------------------------


def test_every_bound_is_configurable_and_the_example_states_the_defaults(tmp_path: Path) -> None:
    server = load_config(EXAMPLE, write_secrets(tmp_path / "s.toml"), env={}).server
    defaults = ServerConfig()
    for key in (
        "max_connections_per_source",
        "frame_timeout_s",
        "max_buffer_bytes",
        "max_write_buffer_bytes",
        "write_stall_timeout_s",
    ):
        assert getattr(server, key) == getattr(defaults, key), key


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("max_connections_per_source = -1", "an integer from 0 to 1000000"),
        ("frame_timeout_s = 0", "a number from 0.1 to 3600"),
        ('frame_timeout_s = "10"', "a number from 0.1 to 3600"),
        ("max_write_buffer_bytes = 100", "an integer from 4096 to 67108864"),
        ("write_stall_timeout_s = true", "a number from 0.1 to 3600"),
    ],
)
def test_bad_bounds_name_the_key(tmp_path: Path, line: str, expected: str) -> None:
    cfg = write_config(tmp_path, MINIMAL + "[server]\n" + line + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg, write_secrets(tmp_path / "s.toml"), env={})
    assert err.value.key == "server." + line.split(" ", maxsplit=1)[0] and expected in str(err.value)


# --- deadlines, sans IO ---------------------------------------------------------------------------


def test_a_frame_dribbled_byte_by_byte_expires_at_the_frame_deadline() -> None:
    d = ConnectionDeadlines(0.0)
    for second in range(1, 5):  # one byte per second keeps the idle deadline away...
        d.read(float(second), completed=False, partial=True)
        assert d.expired(float(second), T, awaiting_store=False) is None
    assert d.expired(6.0, T, awaiting_store=False) == FRAME_TIMEOUT  # ...not the frame's (from t=1)


def test_each_frame_gets_its_own_deadline_from_its_first_byte() -> None:
    d = ConnectionDeadlines(0.0)
    d.read(0.0, completed=False, partial=True)  # frame 1 starts
    d.read(4.0, completed=True, partial=True)  # frame 1 ends, frame 2 starts in the same read
    assert d.expired(8.5, T, awaiting_store=False) is None
    assert d.expired(9.0, T, awaiting_store=False) == FRAME_TIMEOUT
    d.read(8.0, completed=True, partial=False)  # frame 2 ends on a read boundary: nothing due
    assert d.expired(200.0, T, awaiting_store=False) is None
    assert d.expired(308.0, T, awaiting_store=False) == IDLE_TIMEOUT
    assert d.expired(308.0, T, awaiting_store=True) is None  # the device waits for its ACKs


def test_a_proxy_header_is_due_from_the_connection_start() -> None:
    d = ConnectionDeadlines(10.0, partial=True)
    assert d.expired(14.9, T, awaiting_store=False) is None
    assert d.expired(15.0, T, awaiting_store=False) == FRAME_TIMEOUT


def test_no_frame_deadline_while_the_server_holds_reading() -> None:
    d = ConnectionDeadlines(0.0)
    d.read(0.0, completed=False, partial=True)
    d.hold()  # store back-pressure: the rest of the frame is not read
    assert d.expired(100.0, T, awaiting_store=True) is None
    d.release(100.0)  # reading again: a whole new deadline
    assert d.expired(104.0, T, awaiting_store=False) is None
    assert d.expired(105.0, T, awaiting_store=False) == FRAME_TIMEOUT


def test_write_stall_deadline_runs_while_acks_are_unread() -> None:
    d = ConnectionDeadlines(0.0)
    d.read(1.0, completed=True, partial=True)
    d.write_blocked(2.0)
    assert d.expired(31.0, T, awaiting_store=False) is None  # the frame deadline does not apply
    assert d.expired(32.0, T, awaiting_store=False) == WRITE_STALL
    d.write_unblocked(20.0)  # the device read its ACKs in time; reading resumes, deadlines anew
    assert d.expired(24.9, T, awaiting_store=False) is None
    assert d.expired(25.0, T, awaiting_store=False) == FRAME_TIMEOUT


def test_source_counts_refuse_above_the_limit_and_free_on_close() -> None:
    counts = SourceCounts(2)
    assert counts.add("198.51.100.7") and counts.add("198.51.100.7")
    assert not counts.add("198.51.100.7")
    assert counts.add("198.51.100.8")
    counts.remove("198.51.100.7")
    assert counts["198.51.100.7"] == 1 and counts.add("198.51.100.7")
    for _ in range(3):
        counts.remove("198.51.100.7")
    counts.remove("198.51.100.8")
    assert len(counts) == 0
    unlimited = SourceCounts(0)
    assert all(unlimited.add("10.0.0.1") for _ in range(10_000))


# --- buffer accounting ----------------------------------------------------------------------------


def test_frame_stream_holds_only_the_unfinished_frame() -> None:
    dev = Device(60)
    frames = b"".join(dev.frame(s) for s in range(1, 201))
    assert len(frames) > 8192
    stream = FrameStream()
    items = stream.feed(frames + dev.frame(201)[:30])
    assert len(items) == 200 and stream.buffered == 30 and stream.in_frame
    assert len(stream.feed(dev.frame(201)[30:])) == 1 and stream.buffered == 0 and not stream.in_frame


# --- PROXY header: a long one, split anywhere -----------------------------------------------------


def test_proxy_v2_parser_verdict_does_not_depend_on_the_split() -> None:
    header = proxy_v2_with_tlvs("198.51.100.7", 40000, 300)
    assert len(header) == 16 + 12 + 300
    for cut in range(len(header) + 1):
        got = parse_proxy_header(header[:cut], "any")
        assert got is None if cut < len(header) else got == (len(header), ("198.51.100.7", 40000))
    too_long = proxy_v2_with_tlvs("198.51.100.7", 40000, 1000)
    for cut in range(16, len(too_long) + 1):  # refused as soon as its length field is read
        with pytest.raises(ProxyHeaderError, match="over the limit of 512"):
            parse_proxy_header(too_long[:cut], "v2", max_len=512)
    assert parse_proxy_header(too_long[:15], "v2", max_len=512) is None


def test_a_long_proxy_v2_header_split_after_byte_233_over_tcp(tmp_path: Path) -> None:
    header = proxy_v2_with_tlvs("198.51.100.9", 40009, 300)

    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path, proxy_protocol="any")) as (gw, _):
            dev = Device(63)
            await dev.connect(gw.server.port)
            await dev.send(header[:233])
            await wait_until(lambda: gw.server.metrics.bytes_received >= 233, "the first part read alone")
            await dev.send(header[233:] + dev.frame(1))
            [ack] = await dev.acks(1)
            assert ack.status == AckStatus.OK
            assert [c.peer for c in gw.server.connections] == [("198.51.100.9", 40009)]
            await dev.close()

    run(scenario())


# --- a device that does not read its ACKs ---------------------------------------------------------


async def flood_without_reading(dev: Device, frame: bytes, stop: asyncio.Event) -> None:
    """Send `frame` again and again (each answered DUPLICATE), never reading."""
    assert dev.writer is not None
    burst = frame * 64
    try:
        while not stop.is_set():
            if dev.writer.transport.get_write_buffer_size() > 256 << 10:
                await asyncio.sleep(0.05)  # the kernel buffers are full: hold our own
                continue
            dev.writer.write(burst)
            try:
                await asyncio.wait_for(dev.writer.drain(), 0.2)
            except TimeoutError:
                continue  # the gateway stopped reading: our send buffer is full
    except ConnectionError:
        return


async def connect_small_window(dev: Device, gw: Any) -> None:
    """Connect with small socket buffers on both ends: a device that does not read fills them
    after a few kB of ACKs instead of megabytes (kernel buffers are bounded, but large)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    before = set(gw.server.connections)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", gw.server.port))
    dev.reader, dev.writer = await asyncio.open_connection(sock=sock)
    await wait_until(lambda: set(gw.server.connections) - before, "a new connection")
    [conn] = set(gw.server.connections) - before
    conn.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


async def reading_stopped(gw: Any, quiet: float = 0.5, timeout: float = 60.0) -> None:
    """Wait until the gateway has read nothing for `quiet` seconds."""
    loop = asyncio.get_running_loop()
    last, since = -1, loop.time()
    async with asyncio.timeout(timeout):
        while True:
            received = gw.server.metrics.bytes_received
            if received != last:
                last, since = received, loop.time()
            elif loop.time() - since >= quiet:
                return
            await asyncio.sleep(0.02)


def write_buffered(gw: Any) -> int:
    return sum(c.transport.get_write_buffer_size() for c in gw.server.connections if c.transport)


def test_a_device_that_reads_no_acks_stops_being_read_and_can_resume(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = make_config(tmp_path, rate_limit_per_s=0, max_write_buffer_bytes=16384)
        async with running_gateway(cfg) as (gw, _):
            dev = Device(64)
            await connect_small_window(dev, gw)
            frame = dev.frame(1)
            await dev.send(frame)
            assert (await dev.acks(1))[0].status == AckStatus.OK
            stop = asyncio.Event()
            flood = asyncio.create_task(flood_without_reading(dev, frame, stop))
            await reading_stopped(gw)  # while the device still has replays to send
            assert gw.server.stats()["connections_write_blocked"] == 1
            peak = 0
            received = gw.server.metrics.bytes_received
            for _ in range(50):  # reading stays paused: nothing more is read, nothing more queued
                await asyncio.sleep(0.02)
                peak = max(peak, write_buffered(gw))
            assert gw.server.metrics.bytes_received == received
            # at most the high mark plus the ACKs of the read that crossed it
            assert peak <= 16384 + 300_000, peak
            _, body = await http_get(gw.control.port, "/stats")
            stats = json.loads(body)
            assert stats["write_buffered_bytes"] <= 16384 + 300_000
            stop.set()
            await flood
            # The device reads again: the DUPLICATE ACKs are there, the gateway reads on, and a
            # new frame (behind every replay in the stream) is answered OK.
            assert dev.reader is not None and dev.writer is not None
            dev.writer.write(dev.frame(2))  # queued behind the replays: no drain() before reading
            stream, statuses = FrameStream(), []
            async with asyncio.timeout(60):
                while AckStatus.OK not in statuses:
                    data = await dev.reader.read(1 << 20)
                    assert data, "closed"
                    statuses += [verify_ack(dev.key, item).status for item in stream.feed(data)]  # type: ignore[arg-type]
            assert set(statuses) == {AckStatus.DUPLICATE, AckStatus.OK} and statuses[-1] == AckStatus.OK
            assert gw.server.stats()["connections_write_blocked"] == 0
            await dev.close()

    run(scenario())


def test_a_device_that_never_reads_its_acks_is_closed_after_the_stall_deadline(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = make_config(tmp_path, rate_limit_per_s=0, max_write_buffer_bytes=8192, write_stall_timeout_s=1)
        async with running_gateway(cfg) as (gw, _):
            devs = [Device(70 + i) for i in range(4)]
            stop = asyncio.Event()
            floods = []
            for dev in devs:
                await connect_small_window(dev, gw)
                frame = dev.frame(1)
                await dev.send(frame)
                assert (await dev.acks(1))[0].status == AckStatus.OK
                floods.append(asyncio.create_task(flood_without_reading(dev, frame, stop)))
            await wait_until(lambda: not gw.server.connections, "stalled connections closed", timeout=60)
            stop.set()
            await asyncio.gather(*floods)
            _, text = await http_get(gw.control.port, "/metrics")
            assert metric(text, "nanogridata_connections_closed_total", reason="write_stall") == 4
            fresh = Device(79)  # the slots are free again
            await fresh.connect(gw.server.port)
            await fresh.send(fresh.frame(1))
            assert (await fresh.acks(1))[0].status == AckStatus.OK
            for dev in (*devs, fresh):
                await dev.close()

    run(scenario())


# --- slow senders and per-source limits -----------------------------------------------------------


async def dribble(dev: Device, data: bytes, interval: float) -> None:
    """Send `data` one byte per `interval` until done or closed."""
    try:
        for i in range(len(data)):
            await dev.send(data[i : i + 1])
            await asyncio.sleep(interval)
    except ConnectionError:
        return


async def closed_or_reset(dev: Device) -> bool:
    """The gateway ended the connection (a FIN, or a RST because bytes kept coming after it)."""
    assert dev.reader is not None
    try:
        async with asyncio.timeout(20):
            while await dev.reader.read(65536):
                pass
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return True


def test_slow_senders_lose_their_slots_at_the_frame_deadline(tmp_path: Path) -> None:
    """Every slot held by a connection dribbling a frame is free after the frame deadline, and
    a real device gets in."""
    slow = 6

    async def scenario() -> None:
        cfg = make_config(tmp_path, max_connections=slow, frame_timeout_s=1.5, idle_timeout_s=300)
        async with running_gateway(cfg) as (gw, _):
            devs = [Device(80 + i) for i in range(slow)]
            for dev in devs:
                await dev.connect(gw.server.port)
            await wait_until(lambda: len(gw.server.connections) == slow, "the slow connections open")
            late = Device(90)  # every slot is taken: refused
            await late.connect(gw.server.port)
            assert await late.closed_by_peer()
            # a byte every 0.25 s: the idle timeout would never fire
            tasks = [asyncio.create_task(dribble(dev, dev.frame(1), 0.25)) for dev in devs]
            await wait_until(lambda: not gw.server.connections, "slow connections closed")
            assert len(gw.server.connections) == 0  # slots held after the deadline
            for task in tasks:
                task.cancel()
            for dev in devs:
                assert await closed_or_reset(dev)
            _, text = await http_get(gw.control.port, "/metrics")
            assert metric(text, "nanogridata_connections_closed_total", reason="frame_timeout") == slow
            assert metric(text, "nanogridata_connections_closed_total", reason="idle_timeout") == 0
            real = Device(91)
            await real.connect(gw.server.port)
            await real.send(real.frame(1))
            assert (await real.acks(1))[0].status == AckStatus.OK
            for dev in (*devs, late, real):
                await dev.close()

    run(scenario())


def test_an_unfinished_proxy_header_is_closed_at_the_frame_deadline(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = make_config(tmp_path, proxy_protocol="v1", frame_timeout_s=1.0)
        async with running_gateway(cfg) as (gw, _):
            silent, partial = Device(92), Device(93)
            await silent.connect(gw.server.port)  # connects, sends nothing
            await partial.connect(gw.server.port, b"PROXY TCP4 198.51.")
            assert await silent.closed_by_peer() and await partial.closed_by_peer()
            _, text = await http_get(gw.control.port, "/metrics")
            assert metric(text, "nanogridata_connections_closed_total", reason="frame_timeout") == 2

    run(scenario())


def test_connections_per_source_are_limited(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path, max_connections_per_source=2)) as (gw, _):
            a, b, c = Device(100), Device(101), Device(102)
            await a.connect(gw.server.port)
            await b.connect(gw.server.port)
            await wait_until(lambda: len(gw.server.connections) == 2, "two connections")
            await c.connect(gw.server.port)
            assert await c.closed_by_peer()
            await a.close()  # a slot of that source is free again
            await wait_until(lambda: len(gw.server.connections) == 1, "one connection")
            d = Device(103)
            await d.connect(gw.server.port)
            await d.send(d.frame(1))
            assert (await d.acks(1))[0].status == AckStatus.OK
            _, text = await http_get(gw.control.port, "/metrics")
            assert (
                metric(text, "nanogridata_connections_rejected_total", reason="max_connections_per_source")
                == 1
            )
            for dev in (b, c, d):
                await dev.close()

    run(scenario())


def test_behind_a_proxy_the_declared_client_is_the_source(tmp_path: Path) -> None:
    def v1(ip: str, port: int) -> bytes:
        return f"PROXY TCP4 {ip} 10.0.0.1 {port} 5680\r\n".encode()

    async def scenario() -> None:
        cfg = make_config(tmp_path, proxy_protocol="v1", max_connections_per_source=2)
        async with running_gateway(cfg) as (gw, _):
            devs = [Device(110 + i) for i in range(4)]
            sources = [
                v1("198.51.100.7", 1),
                v1("198.51.100.7", 2),
                v1("198.51.100.7", 3),
                v1("198.51.100.8", 1),
            ]
            for dev, header in zip(devs, sources, strict=True):
                await dev.connect(gw.server.port, header)
                await dev.send(dev.frame(1))
            assert await devs[2].closed_by_peer()  # the third from .7
            for dev in (devs[0], devs[1], devs[3]):  # all from 127.0.0.1, but not one source
                assert (await dev.acks(1))[0].status == AckStatus.OK
            assert gw.server.sources["198.51.100.7"] == 2 and gw.server.sources["127.0.0.1"] == 0
            for dev in devs:
                await dev.close()

    run(scenario())


class _ControlTarget:
    def is_alive(self) -> bool:
        return True

    def is_ready(self) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {}

    def request_drain(self) -> bool:
        return False

    @property
    def metrics_registry(self) -> Any:
        return CollectorRegistry()


def test_the_control_port_holds_at_most_max_connections_then_serves_again() -> None:
    """Clients that connect to the control port and send nothing hold MAX_CONNECTIONS sockets at
    the most: one more is closed unanswered; once they go, requests are answered again."""

    async def scenario() -> None:
        control = ControlServer(_ControlTarget(), "127.0.0.1", 0)
        await control.start()
        idle: list[asyncio.StreamWriter] = []
        try:
            for _ in range(MAX_CONNECTIONS):
                idle.append((await asyncio.open_connection("127.0.0.1", control.port))[1])
            await wait_until(lambda: control.connections == MAX_CONNECTIONS, "the idle connections held")
            reader, writer = await asyncio.open_connection("127.0.0.1", control.port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = await asyncio.wait_for(reader.read(), timeout=20)
            except ConnectionResetError:
                answer = b""
            writer.close()
            assert answer == b"", answer
            assert control.refused == 1 and control.connections == MAX_CONNECTIONS
            for held in idle:
                held.close()
            await wait_until(lambda: control.connections == 0, "the idle connections released")
            assert await http_get(control.port, "/health") == (200, '{"alive": true}\n')
            assert control.refused == 1
        finally:
            for held in idle:
                held.close()
            await control.close()

    run(scenario())
