"""Sans-IO PROXY header parser and the persisted replay windows."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from nanogridata_gateway.proxy_protocol import V2_SIGNATURE, ProxyHeaderError, parse_proxy_header
from nanogridata_gateway.replay import PersistentReplayGuard


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack(">H", len(body)) + body


def test_proxy_v1() -> None:
    line = b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 5680\r\n"
    assert parse_proxy_header(line + b"rest", "v1") == (len(line), ("203.0.113.9", 51000))
    six = b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 5680\r\n"
    assert parse_proxy_header(six, "any") == (len(six), ("2001:db8::1", 40000))
    assert parse_proxy_header(b"PROXY UNKNOWN\r\n", "any") == (15, None)
    assert parse_proxy_header(b"PROXY TCP4 203.0.113.9", "v1") is None  # needs more bytes
    for bad in (
        b"PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 ::1 10.0.0.1 1 2\r\n",
        b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
        b"GET / HTTP/1.1\r\n",
        b"PROXY " + b"x" * 120,
    ):
        with pytest.raises(ProxyHeaderError):
            parse_proxy_header(bad, "any")
    with pytest.raises(ProxyHeaderError):  # a v1 header where only v2 is allowed
        parse_proxy_header(line, "v2")


def test_proxy_v2() -> None:
    four = v2(1, 0x11, bytes([192, 0, 2, 1, 10, 0, 0, 1]) + struct.pack(">HH", 40001, 5680))
    assert parse_proxy_header(four + b"\xc1\x53", "v2") == (len(four), ("192.0.2.1", 40001))
    six = v2(1, 0x21, bytes(15) + b"\x01" + bytes(16) + struct.pack(">HH", 7, 5680))
    assert parse_proxy_header(six, "any") == (len(six), ("::1", 7))
    local = v2(0, 0x00, b"")
    assert parse_proxy_header(local, "v2") == (16, None)  # LOCAL: the proxy's own health check
    assert parse_proxy_header(four[:10], "v2") is None
    assert parse_proxy_header(four[:-1], "v2") is None
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(v2(1, 0x11, bytes(4)), "v2")  # address block too short
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(four, "v1")


def test_replay_state_survives_restart_and_torn_journal(tmp_path: Path) -> None:
    guard = PersistentReplayGuard(tmp_path)
    for seq in (10, 12, 100):
        guard.mark(0x10, 7, seq)
    guard.mark(0x20, 7, 5)
    guard.flush()  # no close(): as if the process were killed now
    journal = tmp_path / "replay.journal"
    with open(journal, "ab") as fh:
        fh.write(b"\x10\x00\x00")  # a torn record from a crash mid-write is ignored
    again = PersistentReplayGuard(tmp_path)
    assert again.seen(0x10, 7, 100) and again.seen(0x10, 7, 12) and again.seen(0x20, 7, 5)
    assert not again.seen(0x10, 7, 99) and not again.seen(0x10, 7, 101) and not again.seen(0x10, 8, 100)
    assert again.seen(0x10, 7, 10)  # older than top - 63: treated as seen
    assert journal.stat().st_size == 0  # compacted into the snapshot at start
    again.close()
    third = PersistentReplayGuard(tmp_path)
    assert third.seen(0x10, 7, 100) and len(third) == 2
    third.close()


def test_replay_journal_compacts_when_large(tmp_path: Path) -> None:
    guard = PersistentReplayGuard(tmp_path, compact_bytes=9 * 100)
    for seq in range(1, 250):
        guard.mark(0x10, 1, seq)
        guard.flush()
    assert (tmp_path / "replay.journal").stat().st_size < 9 * 100
    guard.close()
    assert PersistentReplayGuard(tmp_path).seen(0x10, 1, 249)
