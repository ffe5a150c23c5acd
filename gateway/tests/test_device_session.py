"""The protocol of one device connection without sockets (session.DeviceSession): bytes and the
time in, frames to store, replies and close reasons out; the store's statuses in, ACKs out.
Connection-level behaviour that needs a transport (closing, pausing, timers) is in test_server
and test_connection_bounds."""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import replace
from typing import Any

import cbor2
from prometheus_client import generate_latest

from nanogridata_gateway.codec import Ack, verify_ack
from nanogridata_gateway.config import ServerConfig
from nanogridata_gateway.metrics import IngestMetrics
from nanogridata_gateway.protocol import AckStatus, Reject
from nanogridata_gateway.proxy_protocol import V2_SIGNATURE
from nanogridata_gateway.replay import ReplayWindows
from nanogridata_gateway.session import NOTHING, DeviceSession, Received, SessionContext
from nanogridata_gateway.stream import FrameStream
from nanogridata_gateway.verifier import ModelSpec, Verifier
from test_connection_bounds import proxy_v2_with_tlvs
from test_server import metric

from ingest_support import SECRET_10, SECRET_30, Device, load_vectors, now_ms

OK, BUSY = int(AckStatus.OK), int(AckStatus.BUSY)
MODELS = {0x10: ModelSpec(0x10, SECRET_10), 0x30: ModelSpec(0x30, SECRET_30, high_security=True)}


def context(models: dict[int, ModelSpec] | None = None, **server: Any) -> SessionContext:
    """The sessions' shared state as `serve` builds it (default settings, in-memory replay window)."""
    verifier = Verifier(models or MODELS, ReplayWindows())
    return SessionContext(replace(ServerConfig(), **server), verifier, IngestMetrics())


def session(ctx: SessionContext, peer: Any = ("127.0.0.1", 40000), now: float = 0.0) -> DeviceSession:
    s = DeviceSession(ctx, peer)
    assert s.open(now) is None
    return s


def exposition(ctx: SessionContext) -> str:
    """The metrics as /metrics serves them."""
    return generate_latest(ctx.metrics.registry).decode()


def acks(dev: Device, data: bytes) -> list[Ack]:
    """The ACKs in `data`, each verified with the device's key."""
    out = []
    for item in FrameStream().feed(data):
        assert isinstance(item, bytes), item
        out.append(verify_ack(dev.key, item))
    return out


def store(s: DeviceSession, got: Received, statuses: list[int] | None = None) -> bytes:
    """What the server does with one read's frames: the store's statuses (all OK unless given)
    in, the ACK bytes out, the frames released. Racing copies must get no answer here."""
    own, late = s.stored(got.frames, statuses or [OK] * len(got.frames), now_ms())
    assert late == []
    s.release(got.frames)
    return own


def test_fragmented_frame_byte_by_byte() -> None:
    s, dev = session(context()), Device(1)
    frame = dev.frame(1)
    for i in range(len(frame) - 1):
        assert s.receive_data(frame[i : i + 1], float(i)) is NOTHING
    got = s.receive_data(frame[-1:], float(len(frame)))
    [ack] = acks(dev, store(s, got))
    assert (ack.seq, ack.status) == (1, AckStatus.OK)
    assert len(got.frames) == 1 and got.frames[0].payload == frame[24:-16]


def test_hundred_frames_in_one_write() -> None:
    s, dev = session(context()), Device(2, tag_len=32)
    got = s.receive_data(b"".join(dev.frame(seq) for seq in range(100, 200)), 1.0)
    assert sorted(v.seq for v in got.frames) == list(range(100, 200))  # what the server stores
    received = acks(dev, store(s, got))
    assert sorted(a.seq for a in received) == list(range(100, 200))
    assert {a.status for a in received} == {AckStatus.OK} and {a.tag_len for a in received} == {32}


def test_bad_mac_gets_no_ack_and_is_counted() -> None:
    ctx = context()
    s, dev = session(ctx), Device(3)
    forged = bytearray(dev.frame(1))
    forged[-1] ^= 0xFF
    got = s.receive_data(bytes(forged), 1.0)
    assert got.reply == b"" and got.frames == [] and got.close is None
    got = s.receive_data(dev.frame(1), 2.0)  # the genuine frame afterwards is accepted (window untouched)
    [ack] = acks(dev, store(s, got))
    assert ack.status == AckStatus.OK
    text = exposition(ctx)
    assert metric(text, "nanogridata_mac_failures_total", model="0x10") == 1
    assert metric(text, "nanogridata_frames_rejected_total", reason="bad_mac") == 1
    assert len(got.frames) == 1


def test_replay_answered_duplicate() -> None:
    ctx = context()
    s, dev = session(ctx), Device(4)
    frame = dev.frame(7)
    assert acks(dev, store(s, s.receive_data(frame, 1.0)))[0].status == AckStatus.OK
    got = s.receive_data(frame, 2.0)
    assert got.frames == [] and acks(dev, got.reply)[0].status == AckStatus.DUPLICATE
    # an older sequence inside the window that was never stored is still accepted
    got = s.receive_data(dev.frame(5), 3.0)
    assert [v.seq for v in got.frames] == [5]
    assert acks(dev, store(s, got))[0].status == AckStatus.OK
    text = exposition(ctx)
    assert metric(text, "nanogridata_replays_total", model="0x10") == 1
    assert (
        metric(text, "nanogridata_frames_acked_total", model="0x10", type="telemetry", status="duplicate")
        == 1
    )


def test_oversize_tagged_and_deep_cbor() -> None:
    ctx = context()
    s, dev = session(ctx), Device(6)
    # declared payload above 1024: skipped without an answer, the stream stays in sync
    header = struct.pack(">2sBBBBHIIQ", b"\xc1\x53", 1, 0x10, 1, 0, 1100, 6, 1, now_ms())
    got = s.receive_data(header + bytes(1100 + 16), 1.0)
    assert got.reply == b"" and got.frames == [] and got.close is None
    tagged = cbor2.dumps({"t": cbor2.CBORTag(1, 1_700_000_000)})
    deep = cbor2.dumps({"a": [[[[1]]]]})
    got = s.receive_data(
        dev.frame(2, raw=tagged) + dev.frame(3, raw=deep, frame_type=0x02) + dev.frame(4), 2.0
    )
    refused = acks(dev, got.reply)  # answered at once
    assert [(a.seq, a.status) for a in refused] == [(2, AckStatus.INVALID), (3, AckStatus.INVALID)]
    [ack] = acks(dev, store(s, got))
    assert (ack.seq, ack.status) == (4, AckStatus.OK)
    text = exposition(ctx)
    assert metric(text, "nanogridata_frames_rejected_total", reason="payload_too_large") == 1
    assert metric(text, "nanogridata_frames_rejected_total", reason="cbor_limits") == 2
    assert [v.seq for v in got.frames] == [4]


def test_bad_magic_asks_for_a_close_and_ends_the_stream() -> None:
    ctx = context()
    s = session(ctx)
    got = s.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1.0)
    assert (got.close, got.abort, got.frames, got.reply) == ("bad magic", False, [], b"")
    assert metric(exposition(ctx), "nanogridata_frames_rejected_total", reason="bad_magic") == 1
    assert s.receive_data(Device(9).frame(1), 2.0) is NOTHING  # nothing more is read


def test_short_tag_on_high_security_model() -> None:
    ctx = context()
    weak, strong = Device(10, model_id=0x30, tag_len=16), Device(10, model_id=0x30, tag_len=32)
    got = session(ctx).receive_data(weak.frame(1), 1.0)
    assert got.reply == b"" and got.frames == []
    s = session(ctx)
    assert acks(strong, store(s, s.receive_data(strong.frame(1), 1.0)))[0].status == AckStatus.OK
    assert metric(exposition(ctx), "nanogridata_frames_rejected_total", reason="short_tag") == 1


def test_rate_limit() -> None:
    ctx = context(rate_limit_per_s=1, rate_limit_burst=5)
    s, dev = session(ctx, now=100.0), Device(20)
    got = s.receive_data(b"".join(dev.frame(seq) for seq in range(1, 11)), 100.0)
    assert [a.seq for a in acks(dev, store(s, got))] == [1, 2, 3, 4, 5]  # burst 5: 5 acked, 5 dropped
    assert got.reply == b""
    assert metric(exposition(ctx), "nanogridata_frames_rejected_total", reason="rate_limited") == 5
    # the bucket refills at the rate: one more frame a second later
    got = s.receive_data(dev.frame(11) + dev.frame(12), 101.0)
    assert [v.seq for v in got.frames] == [11]


def test_proxy_protocol_v1_and_v2() -> None:
    ctx = context(proxy_protocol="any")
    v1, v2 = Device(11), Device(12)
    s1 = session(ctx, peer=("127.0.0.1", 50001))
    got = s1.receive_data(b"PROXY TCP4 198.51.100.7 10.0.0.1 40000 5680\r\n" + v1.frame(1), 1.0)
    assert acks(v1, store(s1, got))[0].status == AckStatus.OK
    addr = bytes([198, 51, 100, 8, 10, 0, 0, 1]) + struct.pack(">HH", 40001, 5680)
    s2 = session(ctx, peer=("127.0.0.1", 50002))
    got = s2.receive_data(V2_SIGNATURE + bytes([0x21, 0x11, 0, 12]) + addr + v2.frame(1), 1.0)
    assert acks(v2, store(s2, got))[0].status == AckStatus.OK
    assert sorted(str(x.peer) for x in (s1, s2)) == ["('198.51.100.7', 40000)", "('198.51.100.8', 40001)"]
    bare = session(ctx)  # no header: refused
    got = bare.receive_data(Device(13).frame(1), 1.0)
    assert got.close is not None and got.close.startswith("PROXY header:") and not got.abort
    assert got.frames == [] and got.reply == b""
    assert metric(exposition(ctx), "nanogridata_connections_rejected_total", reason="proxy_header") == 1


def test_a_long_proxy_v2_header_split_at_every_byte_is_accepted() -> None:
    """A 328-byte PROXY v2 header (TLVs), then a frame: whatever the split between two reads, the
    connection takes the declared source and its frame is answered."""
    header = proxy_v2_with_tlvs("198.51.100.7", 40000, 300)
    ctx = context(proxy_protocol="v2", rate_limit_per_s=0)
    for cut in range(1, len(header) + 1):
        dev = Device(1000 + cut)
        s = session(ctx, peer=("10.0.0.5", 41000))
        first = s.receive_data(header[:cut], 1.0)
        got = s.receive_data(header[cut:] + dev.frame(1), 2.0)
        assert first.close is None and got.close is None, cut
        assert s.peer == ("198.51.100.7", 40000), cut
        assert acks(dev, store(s, got))[0].status == AckStatus.OK, cut
        s.closed()
    assert ctx.metrics.connections_rejected["proxy_header"] == 0


def test_behind_a_proxy_the_declared_client_is_the_source() -> None:
    def v1(ip: str, port: int) -> bytes:
        return f"PROXY TCP4 {ip} 10.0.0.1 {port} 5680\r\n".encode()

    ctx = context(proxy_protocol="v1", max_connections_per_source=2)
    devs = [Device(110 + i) for i in range(4)]
    sources = [v1("198.51.100.7", 1), v1("198.51.100.7", 2), v1("198.51.100.7", 3), v1("198.51.100.8", 1)]
    sessions = [session(ctx) for _ in devs]  # all from 127.0.0.1, but not one source
    reads = [s.receive_data(h + d.frame(1), 1.0) for s, h, d in zip(sessions, sources, devs, strict=True)]
    assert (reads[2].close, reads[2].abort) == ("max_connections_per_source", True)  # the third from .7
    assert reads[2].frames == [] and reads[2].reply == b""
    for i in (0, 1, 3):
        assert acks(devs[i], store(sessions[i], reads[i]))[0].status == AckStatus.OK
    assert ctx.sources["198.51.100.7"] == 2 and ctx.sources["127.0.0.1"] == 0
    assert ctx.metrics.connections_rejected["max_connections_per_source"] == 1
    sessions[0].closed()  # a slot of that source is free again
    assert ctx.sources["198.51.100.7"] == 1


def test_complete_frames_of_one_read_are_not_a_buffer_overflow() -> None:
    """200 frames (over 11 kB) in one read with max_buffer_bytes = 8192: every one answered."""
    ctx = context(max_buffer_bytes=8192, rate_limit_per_s=0)
    s, dev = session(ctx), Device(61)
    data = b"".join(dev.frame(seq) for seq in range(1, 201))
    assert len(data) > 11_000
    got = s.receive_data(data, 1.0)
    assert got.close is None
    received = acks(dev, store(s, got))
    assert sorted(a.seq for a in received) == list(range(1, 201))
    assert {a.status for a in received} == {AckStatus.OK} and len(got.frames) == 200
    assert metric(exposition(ctx), "nanogridata_frames_rejected_total", reason="buffer_overflow") == 0


def test_an_unfinished_frame_over_the_limit_closes_the_connection() -> None:
    """The limit bounds the unparsed remainder (set below the smallest configurable value here:
    a frame is at most 1080 bytes, so only then can one unfinished frame exceed it)."""
    ctx = context(rate_limit_per_s=0, max_buffer_bytes=400)
    s, dev = session(ctx), Device(62)
    big = dev.frame(100, raw=cbor2.dumps({"blob": "x" * 250, "more": "y" * 250}))
    got = s.receive_data(dev.frame(1) + big[:450], 1.0)
    assert (got.close, got.abort) == ("buffer overflow", False)
    assert [v.seq for v in got.frames] == [1]  # the complete frame before it is still stored
    assert metric(exposition(ctx), "nanogridata_frames_rejected_total", reason="buffer_overflow") == 1


def test_every_invalid_vector_is_answered_and_counted_by_reason() -> None:
    """Each invalid vector of docs/protocol-vectors.json on a connection of its own: the expected
    ACK (or none) and one count of its reason."""
    vectors = load_vectors()
    secrets = {e["model_id"]: bytes.fromhex(e["master_secret_hex"]) for e in vectors["hkdf"]}
    ctx = context({m: ModelSpec(m, secret, high_security=(m == 0x30)) for m, secret in secrets.items()})
    for case in vectors["invalid"]:
        ctx.clock_ms = lambda case=case: int(case["now_ms"])
        got = session(ctx).receive_data(bytes.fromhex(case["frame_hex"]), 1.0)
        assert got.frames == [], case["name"]
        if case["expect_ack_status"] is None:
            assert got.reply == b"", case["name"]
        else:
            assert got.reply.hex() == case["expect_ack_hex"], case["name"]
            assert verify_ack(bytes.fromhex(case["key_hex"]), got.reply).status == case["expect_ack_status"]
    text = exposition(ctx)
    expected = Counter(case["expect_reason"] for case in vectors["invalid"])
    for reason, count in expected.items():
        assert metric(text, "nanogridata_frames_rejected_total", reason=reason) == count, reason
    assert ctx.inflight_keys == set()


def test_retransmission_racing_its_original_in_one_read_is_not_stored_twice() -> None:
    ctx = context()
    s, dev = session(ctx), Device(3)
    frame = dev.frame(5)
    got = s.receive_data(frame + frame, 1.0)
    assert len(got.frames) == 1 and got.reply == b""  # stored once
    own, late = s.stored(got.frames, [OK], now_ms())
    assert [x for x, _ in late] == [s]
    first, second = acks(dev, own + late[0][1])  # the racing copy's ACK goes after the original's
    assert (first.seq, first.status) == (5, AckStatus.OK)
    assert (second.seq, second.status) == (5, AckStatus.DUPLICATE)  # once the original is stored
    assert s.release(got.frames) and ctx.inflight_keys == set() and ctx.racing == {}
    assert ctx.metrics.rejected["duplicate"] == 1


def test_a_retransmission_on_a_new_connection_racing_its_original_is_answered() -> None:
    """A device that gave up waiting reconnects and resends a frame whose store is still under way:
    it hears DUPLICATE as soon as the original is stored, instead of nothing (which cost it one
    more ACK timeout and reconnect); a full store answers both copies BUSY."""
    ctx = context()
    old, new, dev = session(ctx), session(ctx), Device(3)
    original = old.receive_data(dev.frame(5), 1.0)
    assert len(ctx.inflight_keys) == 1  # the original in flight
    copy = new.receive_data(dev.frame(5), 1.5)
    assert copy.frames == [] and copy.reply == b""  # not stored twice, not answered yet
    own, late = old.stored(original.frames, [OK], now_ms())
    old.release(original.frames)
    assert [(a.seq, a.status) for a in acks(dev, own)] == [(5, AckStatus.OK)]
    assert [x for x, _ in late] == [new]
    assert [(a.seq, a.status) for a in acks(dev, late[0][1])] == [(5, AckStatus.DUPLICATE)]

    original = old.receive_data(dev.frame(6), 2.0)
    assert len(ctx.inflight_keys) == 1  # the next one in flight
    assert new.receive_data(dev.frame(6), 2.5).frames == []
    own, late = old.stored(original.frames, [BUSY], now_ms())  # the store is full
    old.release(original.frames)
    assert [a.status for a in acks(dev, late[0][1])] == [AckStatus.BUSY]
    assert [a.status for a in acks(dev, own)] == [AckStatus.BUSY]
    # a BUSY frame stays retransmittable (not marked in the replay window)
    assert len(new.receive_data(dev.frame(6), 3.0).frames) == 1


def test_at_most_four_racing_copies_are_answered() -> None:
    """A device resends one frame at a time: more copies in flight are a replaying client."""
    ctx = context(rate_limit_per_s=0)
    s, dev = session(ctx), Device(4)
    got = s.receive_data(dev.frame(1) * 7, 1.0)
    _, late = s.stored(got.frames, [OK], now_ms())
    assert len(late) == 4 and ctx.metrics.rejected["duplicate"] == 6


def test_frames_in_flight_hold_reading_until_half_are_released() -> None:
    ctx = context(max_inflight=4, rate_limit_per_s=0)
    s, dev = session(ctx), Device(5)
    first = s.receive_data(dev.frame(1), 1.0)
    assert not first.hold and s.inflight == 1
    second = s.receive_data(dev.frame(2) + dev.frame(3) + dev.frame(4), 1.0)
    assert second.hold and s.inflight == 4  # at max_inflight: stop reading
    s.stored(first.frames, [OK], now_ms())
    assert not s.release(first.frames)  # 3 left: not below half of 4 plus one
    s.stored(second.frames, [OK] * 3, now_ms())
    assert s.release(second.frames)  # none left: read again
    assert s.inflight == 0 and ctx.inflight_keys == set()


def test_statuses_follow_their_frames_and_only_ok_frames_are_marked() -> None:
    ctx = context()
    s, dev = session(ctx), Device(1)
    got = s.receive_data(b"".join(dev.frame(seq) for seq in range(1, 7)), 1.0)
    statuses = [BUSY if seq % 2 else OK for seq in range(1, 7)]
    own = store(s, got, statuses)
    assert [(a.seq, a.status) for a in acks(dev, own)] == list(zip(range(1, 7), statuses, strict=True))
    replay = ctx.verifier.replay
    assert not replay.seen(0x10, 1, 1) and replay.seen(0x10, 1, 2)
    assert ctx.metrics.rejected["busy"] == 3 and ctx.metrics.frames_acked_ok == 3
    assert ctx.metrics.frames_total == 6 and sum(ctx.metrics.processing.counts) == 6


def test_command_frames_are_counted_when_stored() -> None:
    ctx = context()
    s, dev = session(ctx), Device(7)
    got = s.receive_data(dev.frame(1, {"cmd": "reboot"}, frame_type=0x04), 1.0)
    assert ctx.metrics.commands == {}  # not before the store answered
    store(s, got)
    assert ctx.metrics.commands == {0x10: 1}


def test_deadlines_follow_the_reads() -> None:
    """The frame deadline runs from the first byte of an unfinished frame; held reading stops it;
    frames awaiting the store keep the connection from being idle."""
    ctx = context(frame_timeout_s=5.0, idle_timeout_s=300.0)
    s, dev = session(ctx, now=0.0), Device(8)
    frame = dev.frame(1)
    s.receive_data(frame[:10], 1.0)
    assert s.expired(5.9) is None and s.expired(6.0) == "frame_timeout"
    s.hold()
    assert s.expired(60.0) is None
    s.unhold(60.0)
    got = s.receive_data(frame[10:], 61.0)
    assert s.expired(1000.0) is None  # awaiting the store: not idle
    store(s, got)
    assert s.expired(360.9) is None and s.expired(361.0) == "idle_timeout"
    s.write_blocked(400.0)
    assert s.expired(429.9) is None and s.expired(430.0) == "write_stall"


def test_a_proxy_header_is_due_within_the_frame_deadline() -> None:
    ctx = context(proxy_protocol="v1", frame_timeout_s=1.0)
    silent, partial = session(ctx, now=0.0), session(ctx, now=0.0)
    assert partial.receive_data(b"PROXY TCP4 198.51.", 0.5) is NOTHING
    assert silent.expired(1.0) == partial.expired(1.0) == "frame_timeout"


def test_rejection_reasons_are_the_metric_labels() -> None:
    assert [str(r) for r in Reject] == list(IngestMetrics().rejected)
    assert Reject.BAD_MAC == "bad_mac"
