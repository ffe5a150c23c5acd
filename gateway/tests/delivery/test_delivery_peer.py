"""Replay state shared by the pair, over loopback HTTP, with the real replay windows."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from nanogridata_gateway.delivery import open_store
from nanogridata_gateway.delivery_config import PeerConfig, parse_delivery_config
from nanogridata_gateway.peer import ENTRY, PATH, PeerSync, sign
from nanogridata_gateway.replay import ReplayWindows

from conftest import delivery_raw, free_port, make_record, metric, wait_for


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
    """Two delivery stores with peer sync: cross-node replay is rejected. With the default 200 ms
    batch interval B knows within ~0.3 s on an idle machine; the 5 s bound leaves room for a CI
    machine starved by the lab deploy, and still fails a sync that waits for the next frame."""
    secret = os.urandom(32).hex()
    port_a, port_b = free_port(), free_port()

    def raw(name: str, listen: int, peer: int) -> dict[str, Any]:
        return delivery_raw(
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

    async def run() -> None:
        guard_a, guard_b = ReplayWindows(), ReplayWindows()
        reg_a, reg_b = CollectorRegistry(), CollectorRegistry()
        store_a = open_store(parse_delivery_config(raw("a", port_a, port_b), env={}), guard_a, reg_a)
        store_b = open_store(parse_delivery_config(raw("b", port_b, port_a), env={}), guard_b, reg_b)
        await store_a.start()
        await store_b.start()
        record = make_record(41, device_id=900)
        await store_a.append(record)
        await wait_for(lambda: guard_b.seen(0x10, 900, 41), 5.0, "B to learn A's frame")
        assert not guard_b.seen(0x10, 900, 42)
        assert metric(reg_b, "nanogridata_peer_sync_entries_received_total", peer="other") == 1
        await wait_for(
            lambda: metric(reg_a, "nanogridata_peer_sync_entries_sent_total", peer="other") == 1,
            10,
            "A to count the entry as sent",
        )
        assert metric(reg_a, "nanogridata_peer_sync_up", peer="other") == 1
        await store_a.close()
        await store_b.close()

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
