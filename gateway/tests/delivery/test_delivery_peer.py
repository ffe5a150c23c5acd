"""Replay state shared by the pair, over loopback HTTP, with the real replay windows."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from nanogridata_gateway.config import GatewayConfig
from nanogridata_gateway.delivery_config import PeerConfig, parse_delivery_config
from nanogridata_gateway.peer import ENTRY, MAX_SEQ_ADVANCE, PATH, PeerSync, sign
from nanogridata_gateway.protocol import AckStatus
from nanogridata_gateway.replay import ReplayWindows

from conftest import delivery_raw, free_port, metric, wait_for
from ingest_support import Device, make_config, running_gateway


def _pair(secret_a: bytes, secret_b: bytes) -> tuple[PeerConfig, PeerConfig]:
    port_a, port_b = free_port(), free_port()
    a = PeerConfig(
        url=f"http://127.0.0.1:{port_b}",
        listen_host="127.0.0.1",
        listen_port=port_a,
        secret=secret_a,
        node_name="gw-a",
        peer_name="gw-b",
        batch_interval_ms=50,
    )
    b = PeerConfig(
        url=f"http://127.0.0.1:{port_a}",
        listen_host="127.0.0.1",
        listen_port=port_b,
        secret=secret_b,
        node_name="gw-b",
        peer_name="gw-a",
        batch_interval_ms=50,
    )
    return a, b


def test_frame_accepted_on_a_is_soon_a_duplicate_on_b(tmp_path: Path) -> None:
    """Two gateways, assembled as `serve` assembles them, with peer sync: a frame ACKed OK on A is
    soon a duplicate on B. With the default 200 ms batch interval B knows within ~0.3 s on an idle
    machine; the 5 s bound leaves room for a CI machine starved by the lab deploy, and still fails
    a sync that waits for the next frame."""
    secret = os.urandom(32).hex()
    port_a, port_b = free_port(), free_port()

    def config(name: str, listen: int, peer: int) -> GatewayConfig:
        raw = delivery_raw(
            tmp_path / name,
            {"alba": {"type": "jsonl", "path": str(tmp_path / name / "out.jsonl")}},
            peer={
                "url": f"http://127.0.0.1:{peer}",
                "listen": f"127.0.0.1:{listen}",
                "secret": secret,
                "node_name": name,
                "peer_name": "other",
            },
        )
        return dataclasses.replace(
            make_config(tmp_path / name / "state"), delivery=parse_delivery_config(raw, env={})
        )

    async def run() -> None:
        async with (
            running_gateway(config("a", port_a, port_b)) as (gw_a, _),
            running_gateway(config("b", port_b, port_a)) as (gw_b, _),
        ):
            guard_b = gw_b.replay
            reg_a, reg_b = gw_a.metrics.registry, gw_b.metrics.registry
            device = Device(900)
            await device.connect(gw_a.server.port if gw_a.server else 0)
            await device.send(device.frame(41))
            assert [ack.status for ack in await device.acks(1)] == [AckStatus.OK]
            await device.close()
            await wait_for(lambda: guard_b.seen(0x10, 900, 41), 5.0, "B to learn A's frame")
            assert not guard_b.seen(0x10, 900, 42)
            assert metric(reg_b, "nanogridata_peer_sync_entries_received_total", peer="other") == 1
            await wait_for(
                lambda: metric(reg_a, "nanogridata_peer_sync_entries_sent_total", peer="other") == 1,
                10,
                "A to count the entry as sent",
            )
            assert metric(reg_a, "nanogridata_peer_sync_up", peer="other") == 1
            replayed = Device(900)
            await replayed.connect(gw_b.server.port if gw_b.server else 0)
            await replayed.send(device.frame(41))
            assert [ack.status for ack in await replayed.acks(1)] == [AckStatus.DUPLICATE]
            await replayed.close()

    asyncio.run(run())


def test_wrong_secret_is_refused_and_counted() -> None:
    config_a, config_b = _pair(os.urandom(32), os.urandom(32))

    async def run() -> None:
        guard_b = ReplayWindows()
        reg_a = CollectorRegistry()
        a = PeerSync(config_a, ReplayWindows(), reg_a)
        b = PeerSync(config_b, guard_b, CollectorRegistry())
        await a.start()
        await b.start()
        a.accepted(0x10, 5, 1)
        await wait_for(
            lambda: metric(reg_a, "nanogridata_peer_sync_failures_total", peer="gw-b") >= 1,
            10,
            "a refused exchange",
        )
        assert metric(reg_a, "nanogridata_peer_sync_up", peer="gw-b") == 0
        assert not guard_b.seen(0x10, 5, 1)
        await a.close()
        await b.close()

    asyncio.run(run())


def test_unreachable_peer_then_catch_up() -> None:
    secret = os.urandom(32)
    config_a, config_b = _pair(secret, secret)

    async def run() -> None:
        reg_a = CollectorRegistry()
        a = PeerSync(config_a, ReplayWindows(), reg_a)
        await a.start()
        for seq in range(1, 101):
            a.accepted(0x20, 7, seq)
        await wait_for(
            lambda: metric(reg_a, "nanogridata_peer_sync_failures_total", peer="gw-b") >= 1,
            10,
            "failures while the peer is down",
        )
        await asyncio.sleep(0.3)
        assert metric(reg_a, "nanogridata_peer_sync_up", peer="gw-b") == 0
        assert metric(reg_a, "nanogridata_peer_sync_lag_seconds", peer="gw-b") >= 0.3
        guard_b = ReplayWindows()
        b = PeerSync(config_b, guard_b, CollectorRegistry())
        await b.start()
        await wait_for(lambda: all(guard_b.seen(0x20, 7, s) for s in range(1, 101)), 10, "B to catch up")
        await wait_for(lambda: metric(reg_a, "nanogridata_peer_sync_up", peer="gw-b") == 1, 10, "up")
        assert metric(reg_a, "nanogridata_peer_sync_lag_seconds", peer="gw-b") == 0
        await a.close()
        await b.close()

    asyncio.run(run())


def test_stale_or_forged_requests_are_rejected() -> None:
    secret = os.urandom(32)
    _, config_b = _pair(secret, secret)

    def post(body: bytes, time_ms: int, signature: str) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{config_b.listen_port}{PATH}",
            data=body,
            method="POST",
            headers={
                "X-Nanogridata-Node": "gw-a",
                "X-Nanogridata-Time": str(time_ms),
                "X-Nanogridata-Signature": signature,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    async def run() -> None:
        guard = ReplayWindows()
        b = PeerSync(config_b, guard, CollectorRegistry())
        await b.start()
        body = ENTRY.pack(0x10, 1, 9)
        now = int(time.time() * 1000)
        old = now - 120_000
        results = await asyncio.gather(
            asyncio.to_thread(post, body, now, sign(b"x" * 32, "gw-a", now, body)),
            asyncio.to_thread(post, body, old, sign(secret, "gw-a", old, body)),
            asyncio.to_thread(post, body + b"\x00", now, sign(secret, "gw-a", now, body)),
        )
        assert results == [401, 403, 401]
        assert not guard.seen(0x10, 1, 9)
        assert await asyncio.to_thread(post, body, now, sign(secret, "gw-a", now, body)) == 200
        assert guard.seen(0x10, 1, 9)
        await b.close()

    asyncio.run(run())


def _raw_post(port: int, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
    """POST with header bytes exactly as given (urllib would refuse or re-encode the junk)."""
    head = b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    head += b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def _signed(secret: bytes, body: bytes) -> list[tuple[bytes, bytes]]:
    now = int(time.time() * 1000)
    return [
        (b"X-Nanogridata-Node", b"gw-a"),
        (b"X-Nanogridata-Time", str(now).encode()),
        (b"X-Nanogridata-Signature", sign(secret, "gw-a", now, body).encode()),
    ]


def test_junk_headers_get_400_before_the_signature_is_checked(caplog: Any) -> None:
    """A header that is not exactly of its form is refused with 400 and counted, never a 500
    and a traceback: '²' passes str.isdigit but not int(), a 5,000-digit time, non-ASCII in
    the signature or the node name, a signature of the wrong length or case."""
    secret = os.urandom(32)
    _, config_b = _pair(secret, secret)
    body = ENTRY.pack(0x10, 1, 9)
    now = int(time.time() * 1000)
    good = sign(secret, "gw-a", now, body).encode()
    node, stamp = b"gw-a", str(now).encode()
    N, T, S = b"X-Nanogridata-Node", b"X-Nanogridata-Time", b"X-Nanogridata-Signature"
    cases = {
        "superscript time": [(N, node), (T, "²".encode()), (S, good)],
        "5000-digit time": [(N, node), (T, b"9" * 5000), (S, good)],
        "negative time": [(N, node), (T, b"-" + stamp), (S, good)],
        "non-ASCII signature": [(N, node), (T, stamp), (S, "é".encode() * 32)],
        "short signature": [(N, node), (T, stamp), (S, good[:-2])],
        "upper-case signature": [(N, node), (T, stamp), (S, good.upper())],
        "non-ASCII node": [(N, "gw-ä".encode()), (T, stamp), (S, good)],
        "latin-1 node": [(N, b"gw-\xe4"), (T, stamp), (S, good)],
        "no headers": [],
    }

    async def run() -> None:
        guard = ReplayWindows()
        registry = CollectorRegistry()
        b = PeerSync(config_b, guard, registry)
        await b.start()
        try:
            for what, headers in cases.items():
                status, text = await asyncio.to_thread(_raw_post, config_b.listen_port, headers, body)
                assert status == 400, (what, status, text)
                assert b"X-Nanogridata-" in text, (what, text)
            refused = metric(
                registry, "nanogridata_peer_sync_requests_refused_total", peer="gw-a", reason="bad_header"
            )
            assert refused == len(cases)
            assert not guard.seen(0x10, 1, 9)
            good_headers = [(N, node), (T, stamp), (S, good)]
            assert (await asyncio.to_thread(_raw_post, config_b.listen_port, good_headers, body))[0] == 200
            assert guard.seen(0x10, 1, 9)
        finally:
            await b.close()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(run())
    assert "Traceback" not in caplog.text and "Error handling request" not in caplog.text


def test_signed_entries_that_would_block_a_device_are_refused_and_counted() -> None:
    """One signed entry with seq 2^32-1 used to park the device at the end of its sequence space:
    every later frame was a DUPLICATE for good. Entries that jump a known window too far, or
    start a new one in the last MAX_SEQ_ADVANCE numbers, are refused and counted; the request
    still answers 200 (the sender must not retry them) and the sane entries are applied."""
    secret = os.urandom(32)
    _, config_b = _pair(secret, secret)

    async def run() -> None:
        guard = ReplayWindows()
        guard.mark(0x10, 1, 1000)
        registry = CollectorRegistry()
        b = PeerSync(config_b, guard, registry)
        await b.start()
        try:
            body = b"".join(
                ENTRY.pack(*entry)
                for entry in [
                    (0x10, 1, 0xFFFFFFFF),  # known device, jumps by ~2^32
                    (0x10, 2, 0xFFFFFFFF),  # new device at the very end
                    (0x10, 1, 1000 + MAX_SEQ_ADVANCE),  # the largest jump allowed
                    (0x10, 3, 0xFFFFFFFF - MAX_SEQ_ADVANCE),  # the highest start allowed
                ]
            )
            status, text = await asyncio.to_thread(
                _raw_post, config_b.listen_port, _signed(secret, body), body
            )
            assert status == 200 and b"applied 2 refused 2" in text, text
        finally:
            await b.close()
        assert guard.top(0x10, 1) == 1000 + MAX_SEQ_ADVANCE
        assert not guard.seen(0x10, 1, 1001 + MAX_SEQ_ADVANCE)  # device 1 goes on
        assert guard.top(0x10, 2) is None  # device 2 is not parked
        assert not guard.seen(0x10, 2, 5)
        assert guard.top(0x10, 3) == 0xFFFFFFFF - MAX_SEQ_ADVANCE
        name = "nanogridata_peer_sync_entries_refused_total"
        assert metric(registry, name, peer="gw-a", reason="seq_jump") == 1
        assert metric(registry, name, peer="gw-a", reason="seq_end") == 1
        assert metric(registry, "nanogridata_peer_sync_entries_received_total", peer="gw-a") == 2

    asyncio.run(run())


def test_signed_entries_of_a_model_this_gateway_does_not_serve_are_refused() -> None:
    """A holder of the pair secret could otherwise grow the replay windows (memory) with devices
    of models no device of this gateway can be."""
    secret = os.urandom(32)
    _, config_b = _pair(secret, secret)

    async def run() -> None:
        guard = ReplayWindows()
        registry = CollectorRegistry()
        b = PeerSync(config_b, guard, registry, models={0x10})
        await b.start()
        try:
            body = ENTRY.pack(0x10, 1, 7) + ENTRY.pack(0x77, 1, 7)
            status, text = await asyncio.to_thread(
                _raw_post, config_b.listen_port, _signed(secret, body), body
            )
            assert status == 200 and b"applied 1 refused 1" in text, text
        finally:
            await b.close()
        assert guard.seen(0x10, 1, 7)
        assert guard.top(0x77, 1) is None
        name = "nanogridata_peer_sync_entries_refused_total"
        assert metric(registry, name, peer="gw-a", reason="unknown_model") == 1

    asyncio.run(run())


def test_more_entries_than_max_batch_are_refused_whole() -> None:
    secret = os.urandom(32)
    _, config_b = _pair(secret, secret)
    config_b = dataclasses.replace(config_b, max_batch=3)

    async def run() -> None:
        guard = ReplayWindows()
        registry = CollectorRegistry()
        b = PeerSync(config_b, guard, registry)
        await b.start()
        try:
            for count, expected in ((3, 200), (4, 413)):
                body = b"".join(ENTRY.pack(0x20, 7, seq) for seq in range(count))
                status, _ = await asyncio.to_thread(
                    _raw_post, config_b.listen_port, _signed(secret, body), body
                )
                assert status == expected, count
        finally:
            await b.close()
        assert guard.top(0x20, 7) == 2
        name = "nanogridata_peer_sync_requests_refused_total"
        assert metric(registry, name, peer="gw-a", reason="too_many") == 1

    asyncio.run(run())


def _raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_requests_that_are_not_http_get_400_and_a_log_line_without_traceback(caplog: Any) -> None:
    secret = os.urandom(32)
    _, config_b = _pair(secret, secret)
    junk = [
        b"\x00\xff\x16\x03\x01 not http\r\n\r\n",
        b"POST "
        + PATH.encode()
        + b" HTTP/1.1\r\nHost: x\r\nX-Nanogridata-Time: "
        + b"9" * 9000
        + b"\r\n\r\n",
        b"POST " + PATH.encode() + b" HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",  # no Host
        b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]

    async def run() -> None:
        registry = CollectorRegistry()
        b = PeerSync(config_b, ReplayWindows(), registry)
        await b.start()
        try:
            for data in junk:
                answer = await asyncio.to_thread(_raw_exchange, config_b.listen_port, data)
                assert answer.split(b" ", 2)[1] == b"400", (data[:40], answer[:80])
        finally:
            await b.close()
        refused = metric(
            registry, "nanogridata_peer_sync_requests_refused_total", peer="gw-a", reason="bad_http"
        )
        assert refused == len(junk)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(run())
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
