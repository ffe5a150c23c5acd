"""The ingest server against real TCP clients on loopback (in-process gateway, test Store): what
needs a transport. The protocol of a connection without sockets: test_device_session."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import uvloop

from nanogridata_gateway.protocol import REASONS, AckStatus

from ingest_support import Device, http_get, make_config, now_ms, running_gateway, wait_until


def metric(text: str, name: str, **labels: str) -> float:
    """Value of one sample in a Prometheus exposition."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(2) or "").split(","))) if m.group(2) else ""
        if got == want:
            return float(m.group(3))
    raise AssertionError(f"{name}{labels} not in metrics")


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop (what `serve` uses) unless NGD_TEST_LOOP=asyncio."""
    if os.environ.get("NGD_TEST_LOOP", "uvloop") == "uvloop":
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
    else:
        asyncio.run(coro)


def test_stale_and_future_timestamps(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path)) as (gw, store):
            dev = Device(5)
            await dev.connect(gw.server.port)
            now = now_ms()
            await dev.send(dev.frame(1, ts=now - 86_400_000 - 5_000) + dev.frame(2, ts=now + 120_000))
            acks = await dev.acks(2)
            assert [a.status for a in acks] == [AckStatus.STALE, AckStatus.STALE]
            assert abs(acks[0].timestamp_ms - now_ms()) < 5_000  # ACK carries the gateway's clock
            await dev.send(dev.frame(3, ts=0))  # clockless device: accepted, stamped by the gateway
            assert (await dev.acks(1))[0].status == AckStatus.OK
            assert store.records[0].timestamp_ms == store.records[0].received_ms > 0
            _, text = await http_get(gw.control.port, "/metrics")
            assert metric(text, "nanogridata_frames_rejected_total", reason="stale") == 1
            assert metric(text, "nanogridata_frames_rejected_total", reason="future") == 1
            await dev.close()

    run(scenario())


def test_restart_keeps_replay_state(tmp_path: Path) -> None:
    async def scenario() -> None:
        dev = Device(7)
        frame = dev.frame(42)
        async with running_gateway(make_config(tmp_path)) as (gw, _):
            await dev.connect(gw.server.port)
            await dev.send(frame)
            assert (await dev.acks(1))[0].status == AckStatus.OK
            await dev.close()
        async with running_gateway(make_config(tmp_path)) as (gw, store):
            dev2 = Device(7)
            await dev2.connect(gw.server.port)
            await dev2.send(frame)
            assert (await dev2.acks(1))[0].status == AckStatus.DUPLICATE
            assert store.records == []
            await dev2.close()

    run(scenario())


def test_busy_then_retransmission_is_stored_not_duplicate(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path)) as (gw, store):
            dev = Device(8)
            await dev.connect(gw.server.port)
            frame = dev.frame(1)
            store.full = True
            await dev.send(frame)
            assert (await dev.acks(1))[0].status == AckStatus.BUSY
            _, body = await http_get(gw.control.port, "/ready")
            assert '"ready": false' in body
            store.full = False
            await dev.send(frame)
            assert (await dev.acks(1))[0].status == AckStatus.OK
            assert len(store.records) == 1
            await dev.close()

    run(scenario())


def test_device_sockets_send_without_nagle(tmp_path: Path) -> None:
    """An ACK leaves at once: the server's side of a device connection has TCP_NODELAY (the
    event loop sets it; the server relies on that rather than setting it per connection)."""

    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path)) as (gw, _):
            dev = Device(10)
            await dev.connect(gw.server.port)
            await wait_until(lambda: gw.server.connections, "the connection is accepted")
            (conn,) = gw.server.connections
            assert conn.transport is not None
            sock = conn.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            await dev.close()

    run(scenario())


def test_bad_magic_closes_connection(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path)) as (gw, _):
            dev = Device(9)
            await dev.connect(gw.server.port)
            await dev.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await dev.closed_by_peer()
            _, text = await http_get(gw.control.port, "/metrics")
            assert metric(text, "nanogridata_frames_rejected_total", reason="bad_magic") == 1

    run(scenario())


def test_max_connections(tmp_path: Path) -> None:
    """(The rate limit: test_device_session.)"""

    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path, max_connections=2)) as (gw, _):
            a, b, c = Device(20), Device(21), Device(22)
            await a.connect(gw.server.port)
            await b.connect(gw.server.port)
            await asyncio.sleep(0.05)
            await c.connect(gw.server.port)
            assert await c.closed_by_peer()
            await a.send(a.frame(1))  # the connections inside the limit are served
            assert [x.seq for x in await a.acks(1)] == [1]
            _, text = await http_get(gw.control.port, "/metrics")
            assert metric(text, "nanogridata_connections_rejected_total", reason="max_connections") == 1
            assert metric(text, "nanogridata_connections_active") == 2
            for d in (a, b, c):
                await d.close()

    run(scenario())


def test_idle_timeout(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path, idle_timeout_s=1)) as (gw, _):
            dev = Device(30)
            await dev.connect(gw.server.port)
            await dev.send(dev.frame(1)[:10])  # a partial frame, then silence
            assert await dev.closed_by_peer()

    run(scenario())


def test_http_endpoints_and_drain(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path)) as (gw, store):
            port = gw.control.port
            assert await http_get(port, "/health") == (200, '{"alive": true}\n')
            assert (await http_get(port, "/ready"))[0] == 200
            status, text = await http_get(port, "/metrics")
            assert status == 200
            for reason in REASONS:  # every rejection reason is exported, even at zero
                assert metric(text, "nanogridata_frames_rejected_total", reason=reason) == 0
            assert metric(text, "nanogridata_ready") == 1
            assert 'nanogridata_build_info{python="' in text
            assert (await http_get(port, "/nope"))[0] == 404
            assert (await http_get(port, "/drain"))[0] == 405
            dev = Device(40)
            await dev.connect(gw.server.port)
            store.delay_s = 0.3  # a frame in flight while the drain starts
            await dev.send(dev.frame(1))
            await asyncio.sleep(0.05)
            status, _ = await http_get(port, "/drain", "POST")
            assert status == 202
            [ack] = await dev.acks(1)  # the in-flight frame is still acknowledged
            assert ack.status == AckStatus.OK
            assert await dev.closed_by_peer()
            assert (await http_get(port, "/ready"))[0] == 503
            status, body = await http_get(port, "/stats")
            assert status == 200 and '"draining": true' in body and '"frames_acked_ok": 1' in body
            late = Device(41)
            try:
                await late.connect(gw.server.port)
                assert await late.closed_by_peer()
            except ConnectionError:
                pass  # refused: also fine, the listener is closed
            await dev.close()

    run(scenario())


def test_drain_only_from_allowed_networks(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path, drain_allow=("10.0.0.0/8",))) as (gw, _):
            status, _ = await http_get(gw.control.port, "/drain", "POST")
            assert status == 403  # the test client is 127.0.0.1
            assert (await http_get(gw.control.port, "/ready"))[0] == 200
            assert not gw.server.draining

    run(scenario())
