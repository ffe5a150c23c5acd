"""The ingest server against real TCP clients on loopback (in-process gateway, test Store)."""

from __future__ import annotations

import asyncio
import os
import re
import struct
from collections import Counter
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import cbor2
import uvloop

from nanogridata_gateway.codec import verify_ack
from nanogridata_gateway.protocol import REASONS, AckStatus
from nanogridata_gateway.verifier import ModelSpec

from ingest_support import Device, http_get, load_vectors, make_config, now_ms, running_gateway


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


def test_fragmented_frame_byte_by_byte(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path)) as (gw, store):
            dev = Device(1)
            await dev.connect(gw.server.port)
            frame = dev.frame(1)
            for i in range(len(frame)):
                await dev.send(frame[i : i + 1])
                await asyncio.sleep(0)
            [ack] = await dev.acks(1)
            assert (ack.seq, ack.status) == (1, AckStatus.OK)
            assert len(store.records) == 1 and store.records[0].payload == frame[24:-16]
            await dev.close()

    run(scenario())


def test_hundred_frames_in_one_write(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path)) as (gw, store):
            dev = Device(2, tag_len=32)
            await dev.connect(gw.server.port)
            await dev.send(b"".join(dev.frame(seq) for seq in range(100, 200)))
            acks = await dev.acks(100)
            assert sorted(a.seq for a in acks) == list(range(100, 200))
            assert {a.status for a in acks} == {AckStatus.OK} and {a.tag_len for a in acks} == {32}
            assert sorted(r.seq for r in store.records) == list(range(100, 200))
            await dev.close()

    run(scenario())


def test_bad_mac_gets_no_ack_and_is_counted(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path)) as (gw, store):
            dev = Device(3)
            await dev.connect(gw.server.port)
            forged = bytearray(dev.frame(1))
            forged[-1] ^= 0xFF
            await dev.send(bytes(forged))
            assert await dev.no_ack()
            await dev.send(dev.frame(1))  # the genuine frame afterwards is accepted (window untouched)
            [ack] = await dev.acks(1)
            assert ack.status == AckStatus.OK
            _, text = await http_get(gw.control.port, "/metrics")
            assert metric(text, "nanogridata_mac_failures_total", model="0x10") == 1
            assert metric(text, "nanogridata_frames_rejected_total", reason="bad_mac") == 1
            assert len(store.records) == 1
            await dev.close()

    run(scenario())


def test_replay_answered_duplicate(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path)) as (gw, store):
            dev = Device(4)
            await dev.connect(gw.server.port)
            frame = dev.frame(7)
            await dev.send(frame)
            assert (await dev.acks(1))[0].status == AckStatus.OK
            await dev.send(frame)
            assert (await dev.acks(1))[0].status == AckStatus.DUPLICATE
            # an older sequence inside the window that was never stored is still accepted
            await dev.send(dev.frame(5))
            assert (await dev.acks(1))[0].status == AckStatus.OK
            assert [r.seq for r in store.records] == [7, 5]
            _, text = await http_get(gw.control.port, "/metrics")
            assert metric(text, "nanogridata_replays_total", model="0x10") == 1
            assert (
                metric(
                    text, "nanogridata_frames_acked_total", model="0x10", type="telemetry", status="duplicate"
                )
                == 1
            )
            await dev.close()

    run(scenario())


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


def test_oversize_tagged_and_deep_cbor(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path)) as (gw, store):
            dev = Device(6)
            await dev.connect(gw.server.port)
            # declared payload above 1024: skipped without an answer, the stream stays in sync
            header = struct.pack(">2sBBBBHIIQ", b"\xc1\x53", 1, 0x10, 1, 0, 1100, 6, 1, now_ms())
            await dev.send(header + bytes(1100 + 16))
            tagged = cbor2.dumps({"t": cbor2.CBORTag(1, 1_700_000_000)})
            deep = cbor2.dumps({"a": [[[[1]]]]})
            await dev.send(dev.frame(2, raw=tagged) + dev.frame(3, raw=deep, frame_type=0x02) + dev.frame(4))
            acks = await dev.acks(3)
            assert [(a.seq, a.status) for a in acks[:2]] == [(2, AckStatus.INVALID), (3, AckStatus.INVALID)]
            assert (acks[2].seq, acks[2].status) == (4, AckStatus.OK)
            _, text = await http_get(gw.control.port, "/metrics")
            assert metric(text, "nanogridata_frames_rejected_total", reason="payload_too_large") == 1
            assert metric(text, "nanogridata_frames_rejected_total", reason="cbor_limits") == 2
            assert [r.seq for r in store.records] == [4]
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


def test_short_tag_on_high_security_model(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path)) as (gw, _):
            weak, strong = Device(10, model_id=0x30, tag_len=16), Device(10, model_id=0x30, tag_len=32)
            await weak.connect(gw.server.port)
            await weak.send(weak.frame(1))
            assert await weak.no_ack()
            await strong.connect(gw.server.port)
            await strong.send(strong.frame(1))
            assert (await strong.acks(1))[0].status == AckStatus.OK
            _, text = await http_get(gw.control.port, "/metrics")
            assert metric(text, "nanogridata_frames_rejected_total", reason="short_tag") == 1
            await weak.close()
            await strong.close()

    run(scenario())


def test_proxy_protocol_v1_and_v2(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path, proxy_protocol="any")) as (gw, _):
            v1 = Device(11)
            await v1.connect(gw.server.port, b"PROXY TCP4 198.51.100.7 10.0.0.1 40000 5680\r\n")
            await v1.send(v1.frame(1))
            assert (await v1.acks(1))[0].status == AckStatus.OK
            addr = bytes([198, 51, 100, 8, 10, 0, 0, 1]) + struct.pack(">HH", 40001, 5680)
            v2 = Device(12)
            await v2.connect(gw.server.port, b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11, 0, 12]) + addr)
            await v2.send(v2.frame(1))
            assert (await v2.acks(1))[0].status == AckStatus.OK
            peers = sorted(str(c.peer) for c in gw.server.connections)
            assert peers == ["('198.51.100.7', 40000)", "('198.51.100.8', 40001)"]
            bare = Device(13)  # no header: refused
            await bare.connect(gw.server.port)
            await bare.send(bare.frame(1))
            assert await bare.closed_by_peer()
            _, text = await http_get(gw.control.port, "/metrics")
            assert metric(text, "nanogridata_connections_rejected_total", reason="proxy_header") == 1
            for d in (v1, v2, bare):
                await d.close()

    run(scenario())


def test_max_connections_and_rate_limit(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = make_config(tmp_path, max_connections=2, rate_limit_per_s=1, rate_limit_burst=5)
        async with running_gateway(cfg) as (gw, _):
            a, b, c = Device(20), Device(21), Device(22)
            await a.connect(gw.server.port)
            await b.connect(gw.server.port)
            await asyncio.sleep(0.05)
            await c.connect(gw.server.port)
            assert await c.closed_by_peer()
            await a.send(b"".join(a.frame(s) for s in range(1, 11)))  # burst 5: 5 acked, 5 dropped
            acks = await a.acks(5)
            assert [x.seq for x in acks] == [1, 2, 3, 4, 5]
            assert await a.no_ack()
            _, text = await http_get(gw.control.port, "/metrics")
            assert metric(text, "nanogridata_connections_rejected_total", reason="max_connections") == 1
            assert metric(text, "nanogridata_frames_rejected_total", reason="rate_limited") == 5
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


def test_every_invalid_vector_over_tcp_is_counted_by_reason(tmp_path: Path) -> None:
    """Each invalid vector of docs/protocol-vectors.json, on a real connection: the expected
    ACK (or none) and one count of its reason in /metrics."""
    vectors = load_vectors()
    secrets = {e["model_id"]: bytes.fromhex(e["master_secret_hex"]) for e in vectors["hkdf"]}
    models = {m: ModelSpec(m, s, high_security=(m == 0x30)) for m, s in secrets.items()}
    cfg = replace(make_config(tmp_path), models=models)

    async def scenario() -> None:
        async with running_gateway(cfg) as (gw, store):
            for case in vectors["invalid"]:
                assert gw.server is not None
                gw.server.clock_ms = lambda case=case: int(case["now_ms"])
                reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
                writer.write(bytes.fromhex(case["frame_hex"]))
                await writer.drain()
                if case["expect_ack_status"] is None:
                    try:
                        data = await asyncio.wait_for(reader.read(100), 0.2)
                    except TimeoutError:
                        data = b""
                    assert data == b"", case["name"]
                else:
                    data = await asyncio.wait_for(reader.readexactly(len(case["expect_ack_hex"]) // 2), 10)
                    assert data.hex() == case["expect_ack_hex"], case["name"]
                    assert (
                        verify_ack(bytes.fromhex(case["key_hex"]), data).status == case["expect_ack_status"]
                    )
                writer.close()
            _, text = await http_get(gw.control.port, "/metrics")
            expected = Counter(case["expect_reason"] for case in vectors["invalid"])
            for reason, count in expected.items():
                assert metric(text, "nanogridata_frames_rejected_total", reason=reason) == count, reason
            assert store.records == []

    run(scenario())


def test_drain_only_from_allowed_networks(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(make_config(tmp_path, drain_allow=("10.0.0.0/8",))) as (gw, _):
            status, _ = await http_get(gw.control.port, "/drain", "POST")
            assert status == 403  # the test client is 127.0.0.1
            assert (await http_get(gw.control.port, "/ready"))[0] == 200
            assert not gw.server.draining

    run(scenario())
