"""Ingest test support: the vectors, an in-process gateway over an in-memory store, a raw TCP
device, condition waits. (The store: bench/memory_store.py; a real `serve` process:
bench/serve_process.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import cbor2
from memory_store import MemoryStore

from nanogridata_gateway.app import Gateway
from nanogridata_gateway.codec import Ack, build_frame, verify_ack
from nanogridata_gateway.config import GatewayConfig, LogConfig, ProtocolConfig, ServerConfig
from nanogridata_gateway.keys import derive_device_key
from nanogridata_gateway.stream import FrameStream
from nanogridata_gateway.verifier import ModelSpec

REPO = Path(__file__).resolve().parents[2]
VECTORS_PATH = REPO / "docs" / "protocol-vectors.json"
SECRET_10 = bytes(range(32))
SECRET_30 = bytes(range(1, 33))


async def wait_until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    """Poll `check` (sync or async) until it is true; a generous deadline for a starved CI."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = check()
                if asyncio.iscoroutine(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(what) from None


def load_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
    return data


def make_config(state_dir: Path, **server: Any) -> GatewayConfig:
    base = ServerConfig(data_host="127.0.0.1", data_port=0, metrics_host="127.0.0.1", metrics_port=0)
    return GatewayConfig(
        server=replace(base, **server),
        protocol=ProtocolConfig(),
        state_dir=str(state_dir),
        log=LogConfig(),
        models={
            0x10: ModelSpec(0x10, SECRET_10),
            0x30: ModelSpec(0x30, SECRET_30, high_security=True),
        },
    )


@contextlib.asynccontextmanager
async def running_gateway(
    config: GatewayConfig, store: MemoryStore | None = None
) -> AsyncIterator[tuple[Gateway, MemoryStore]]:
    store = store or MemoryStore()
    gw = Gateway(config, store_factory=lambda _c, _m: store)
    await gw.start()
    try:
        yield gw, store
    finally:
        await gw.stop()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Device:
    """A raw TCP device: builds frames with its key and reads verified ACKs."""

    def __init__(self, device_id: int, model_id: int = 0x10, tag_len: int = 16) -> None:
        self.device_id = device_id
        self.model_id = model_id
        self.tag_len = tag_len
        secret = SECRET_10 if model_id == 0x10 else SECRET_30
        self.key = derive_device_key(secret, model_id, device_id)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._stream = FrameStream()
        self._acks: list[bytes | str] = []

    async def connect(self, port: int, prefix: bytes = b"") -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        if prefix:
            self.writer.write(prefix)

    def frame(
        self,
        seq: int,
        payload: Any = None,
        *,
        ts: int | None = None,
        frame_type: int = 0x01,
        raw: bytes | None = None,
    ) -> bytes:
        body = (
            raw
            if raw is not None
            else cbor2.dumps(payload if payload is not None else {"p": 1013.25, "seq": seq})
        )
        return build_frame(
            self.key,
            self.model_id,
            frame_type,
            self.device_id,
            seq,
            now_ms() if ts is None else ts,
            body,
            self.tag_len,
        )

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    # Waits below are generous on purpose: they end as soon as the answer comes, and CI runs these
    # tests starved beside the lab deploy, where a loopback ACK has taken over 0.5 s.
    async def acks(self, count: int, timeout: float = 10.0) -> list[Ack]:
        """Read exactly `count` ACKs (verified with the device key)."""
        assert self.reader is not None
        out: list[Ack] = []
        async with asyncio.timeout(timeout):
            while len(out) < count:
                while self._acks and len(out) < count:
                    item = self._acks.pop(0)
                    assert isinstance(item, bytes), item
                    out.append(verify_ack(self.key, item))
                if len(out) >= count:
                    break
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError(f"closed after {len(out)} ACKs")
                self._acks += self._stream.feed(data)
        return out

    async def no_ack(self, wait: float = 0.3) -> bool:
        """True when nothing arrives within `wait` seconds (the connection may stay open)."""
        assert self.reader is not None
        try:
            data = await asyncio.wait_for(self.reader.read(65536), wait)
        except TimeoutError:
            return True
        return data == b""

    async def closed_by_peer(self, wait: float = 10.0) -> bool:
        assert self.reader is not None
        try:
            async with asyncio.timeout(wait):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        return True
        except (TimeoutError, ConnectionError):
            return False

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()
