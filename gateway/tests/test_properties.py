"""Property-based tests (hypothesis) of the codec, CBOR limits, replay window, stream splitter and
the request parsers (peer sync, control API, PROXY header)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import time
from typing import Any

import cbor2
from hypothesis import assume, given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from nanogridata_gateway.cbor_limits import CborError, CborLimits, decode
from nanogridata_gateway.codec import build_frame
from nanogridata_gateway.http_api import _REASONS, ControlServer
from nanogridata_gateway.keys import derive_device_key
from nanogridata_gateway.peer import (
    ENTRY,
    MAX_SEQ_ADVANCE,
    SEQ_MAX,
    PeerRequestError,
    check_request,
    entry_refusal,
    sign,
)
from nanogridata_gateway.protocol import AckStatus
from nanogridata_gateway.proxy_protocol import V2_SIGNATURE, ProxyHeaderError, parse_proxy_header
from nanogridata_gateway.replay import WINDOW, ReplayWindows
from nanogridata_gateway.stream import FrameStream
from nanogridata_gateway.verifier import ModelSpec, Verifier

SECRET = bytes(range(32))
MODEL = 0x10
NOW = 1_790_000_000_000

telemetry_values = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.floats(allow_nan=False, width=64),
    st.floats(allow_nan=False, width=32),
    st.booleans(),
    st.text(max_size=60),
)
telemetry_maps = st.dictionaries(st.text(min_size=1, max_size=12), telemetry_values, max_size=20)


def verifier() -> Verifier:
    return Verifier({MODEL: ModelSpec(MODEL, SECRET)}, ReplayWindows())


def encode(payload: Any) -> bytes:
    data: bytes = cbor2.dumps(payload)
    return data


@given(telemetry_maps, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.sampled_from([16, 32]))
def test_valid_telemetry_roundtrips(payload: dict[str, Any], device: int, seq: int, tag_len: int) -> None:
    raw = encode(payload)
    assume(len(raw) <= 1024 and all(len(k.encode()) <= 256 for k in payload))
    assume(all(not isinstance(v, str) or len(v.encode()) <= 256 for v in payload.values()))
    key = derive_device_key(SECRET, MODEL, device)
    frame = build_frame(key, MODEL, 0x01, device, seq, NOW, raw, tag_len)
    verdict = verifier().verify(frame, NOW)
    assert verdict.status == AckStatus.OK, verdict
    assert verdict.value == payload
    assert verdict.payload == raw


def _valid_frame(device: int = 7, seq: int = 9, tag_len: int = 16) -> bytes:
    key = derive_device_key(SECRET, MODEL, device)
    return build_frame(key, MODEL, 0x01, device, seq, NOW, encode({"p": 1013.25, "t": 21}), tag_len)


def _accepted(data: bytes) -> list[Any]:
    v = verifier()
    stream = FrameStream()
    return [
        verdict
        for item in stream.feed(data)
        if isinstance(item, bytes)
        for verdict in [v.verify(item, NOW)]
        if verdict.status is not None and verdict.status != AckStatus.STALE and verdict.reason is None
    ]


@given(st.data(), st.sampled_from([16, 32]))
def test_no_mutated_frame_is_accepted(data: st.DataObject, tag_len: int) -> None:
    frame = bytearray(_valid_frame(tag_len=tag_len))
    positions = data.draw(st.lists(st.integers(0, len(frame) - 1), min_size=1, max_size=4, unique=True))
    for pos in positions:
        frame[pos] ^= data.draw(st.integers(1, 255))
    assert _accepted(bytes(frame)) == []


@given(st.binary(min_size=0, max_size=40), st.sampled_from([16, 32]))
def test_no_truncated_or_extended_frame_is_accepted(extra: bytes, tag_len: int) -> None:
    frame = _valid_frame(tag_len=tag_len)
    assert _accepted(frame[:-1]) == []
    # appending bytes keeps the original frame intact: exactly one acceptance, never more
    assert len(_accepted(frame + extra)) <= 1


@given(st.binary(max_size=2000))
def test_forged_frames_never_accepted(noise: bytes) -> None:
    """Random frames with a valid-looking header but a guessed tag."""
    assert _accepted(b"\xc1\x53\x01\x10\x01\x00" + noise) == []


@given(st.binary(max_size=300))
def test_decoder_raises_only_cbor_errors(data: bytes) -> None:
    with contextlib.suppress(CborError):
        decode(data)


@given(
    st.recursive(
        st.one_of(
            st.integers(-(2**64), 2**64 - 1),
            st.booleans(),
            st.none(),
            st.text(max_size=20),
            st.binary(max_size=20),
            st.floats(allow_nan=False),
        ),
        lambda children: st.one_of(
            st.lists(children, max_size=6), st.dictionaries(st.text(max_size=5), children, max_size=6)
        ),
        max_leaves=30,
    )
)
def test_decoder_agrees_with_cbor2(value: Any) -> None:
    raw = encode(value)
    try:
        ours = decode(raw)
    except CborLimits:
        return  # e.g. depth > 4: a limit, not a disagreement
    assert ours == value or (isinstance(value, float) and math.isnan(value))


@given(st.lists(st.integers(0, 300), max_size=200))
def test_replay_window_matches_model(seqs: list[int]) -> None:
    windows = ReplayWindows()
    accepted: set[int] = set()
    for seq in seqs:
        top = max(accepted) if accepted else None
        expect_seen = seq in accepted or (top is not None and seq <= top - WINDOW)
        assert windows.seen(MODEL, 1, seq) == expect_seen
        if not expect_seen:
            windows.mark(MODEL, 1, seq)
            accepted.add(seq)
    assert not windows.seen(MODEL, 2, 0)  # other devices are independent


@given(st.lists(st.integers(1, 50), min_size=1, max_size=30), st.integers(1, 40))
def test_stream_split_anywhere_yields_same_frames(cuts: list[int], count: int) -> None:
    frames = [_valid_frame(seq=i, tag_len=16 if i % 2 else 32) for i in range(count)]
    data = b"".join(frames)
    stream = FrameStream()
    out: list[bytes | str] = []
    pos = 0
    i = 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        out += stream.feed(data[pos : pos + step])
        pos += step
        i += 1
    assert out == frames
    assert stream.buffered == 0


def _generic(data: bytes) -> Any:
    from nanogridata_gateway.cbor_limits import CborMalformed, _item

    value, pos = _item(data, 0, 1)
    if pos != len(data):
        raise CborMalformed("trailing")
    return value


@given(
    st.one_of(
        st.binary(min_size=1, max_size=80).map(lambda b: bytes([0xA0 | (b[0] % 24)]) + b[1:]),
        telemetry_maps.map(encode),
    )
)
def test_small_map_fast_path_matches_generic_decoder(data: bytes) -> None:
    """decode() takes a fast path for small top-level maps: same values, same error classes."""
    outcomes = []
    for fn in (decode, _generic):
        try:
            outcomes.append(("ok", fn(data)))
        except CborError as exc:
            outcomes.append(("error", type(exc)))
    assert outcomes[0] == outcomes[1] or (
        outcomes[0][0] == "ok" and repr(outcomes[0]) == repr(outcomes[1])  # NaN != NaN
    )


# --- request parsers: any bytes get an answer or an error of the parser's own type ---------------

PEER_SECRET = bytes.fromhex("9c4e1f7a2b8d3c6e5f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4")
header_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="0123456789", min_size=1, max_size=30),
    st.text(alphabet="0123456789abcdefABCDEF", min_size=60, max_size=68),
    st.sampled_from(["²", "١٢٣", "9" * 5000, "gw-a", " 1", "1 ", "+1", "-1", "0x10"]),
)


@given(
    st.dictionaries(
        st.sampled_from(["X-Nanogridata-Node", "X-Nanogridata-Time", "X-Nanogridata-Signature", "Other"]),
        header_text,
    ),
    st.binary(max_size=100),
)
def test_peer_request_checks_raise_only_their_own_error(headers: dict[str, str], body: bytes) -> None:
    try:
        entries = check_request(PEER_SECRET, headers, body, time.time(), 100)
    except PeerRequestError as exc:
        assert exc.status in (400, 401, 403, 413) and exc.text
    else:  # only a request signed with the secret gets this far
        assert hmac.compare_digest(
            sign(PEER_SECRET, headers["X-Nanogridata-Node"], int(headers["X-Nanogridata-Time"]), body),
            headers["X-Nanogridata-Signature"],
        )
        assert len(entries) == len(body) // ENTRY.size


@given(
    st.binary(max_size=200),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=64),
)
def test_signed_peer_bodies_are_entries_or_refused_whole(body: bytes, node: str) -> None:
    now_ms = int(time.time() * 1000)
    headers = {
        "X-Nanogridata-Node": node,
        "X-Nanogridata-Time": str(now_ms),
        "X-Nanogridata-Signature": sign(PEER_SECRET, node, now_ms, body),
    }
    try:
        entries = check_request(PEER_SECRET, headers, body, now_ms / 1000, 10)
    except PeerRequestError as exc:
        assert exc.status in (400, 413)
        assert len(body) % ENTRY.size or len(body) // ENTRY.size > 10
    else:
        assert b"".join(ENTRY.pack(*e) for e in entries) == body


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 3), st.integers(0, 2**32 - 1)), max_size=50))
def test_no_peer_entry_moves_a_window_past_the_bound(entries: list[tuple[int, int, int]]) -> None:
    windows = ReplayWindows()
    for model, device, seq in entries:
        before = windows.top(model, device)
        if entry_refusal(before, seq) is None:
            windows.mark(model, device, seq)
        after = windows.top(model, device)
        assert after is not None or before is None
        limit = (SEQ_MAX - MAX_SEQ_ADVANCE) if before is None else before + MAX_SEQ_ADVANCE
        assert after is None or after <= limit


class _Target:
    def is_alive(self) -> bool:
        return True

    def is_ready(self) -> bool:
        return False

    def stats(self) -> dict[str, Any]:
        return {"connections": 0}

    def request_drain(self) -> bool:
        return False

    @property
    def metrics_registry(self) -> Any:
        return CollectorRegistry()


class _Writer:
    def __init__(self, peer: Any) -> None:
        self.out = bytearray()
        self.peer = peer

    def get_extra_info(self, name: str) -> Any:
        return self.peer if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


http_methods = st.one_of(
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "get", ""]), st.text(max_size=10)
)
http_paths = st.one_of(
    st.sampled_from(["/health", "/ready", "/metrics", "/stats", "/drain", "/drain?x=1", "*", ""]),
    st.text(max_size=30),
)


@given(http_methods, http_paths, st.one_of(st.just("127.0.0.1"), st.text(max_size=40)))
def test_control_router_answers_every_method_path_and_client(method: str, path: str, client: str) -> None:
    status, ctype, body = ControlServer(_Target(), "127.0.0.1", 0).route(method, path, client)
    assert status in _REASONS and ctype and isinstance(body, bytes)


@given(
    st.one_of(
        st.binary(max_size=300),
        st.tuples(http_methods, http_paths, st.lists(st.binary(max_size=40), max_size=5)).map(
            lambda r: (
                f"{r[0]} {r[1]} HTTP/1.1\r\n".encode("utf-8", "surrogatepass")
                + b"".join(h + b"\r\n" for h in r[2])
                + b"\r\n"
            )
        ),
    ),
    st.sampled_from([("127.0.0.1", 1), ("::1", 2, 0, 0), None, "junk"]),
)
def test_control_server_never_fails_on_a_request(data: bytes, peer: Any) -> None:
    server = ControlServer(_Target(), "127.0.0.1", 0)
    writer = _Writer(peer)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    http_log = logging.getLogger("nanogridata.http")
    http_log.addHandler(handler)

    async def run() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        await server._handle(reader, writer)  # type: ignore[arg-type]

    try:
        asyncio.run(run())
    finally:
        http_log.removeHandler(handler)
    assert not records, [r.getMessage() for r in records]
    if writer.out:
        status = int(writer.out.split(b" ", 2)[1])
        assert writer.out.startswith(b"HTTP/1.1 ") and status in _REASONS


@given(
    st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=200).map(lambda b: b"PROXY " + b),
        st.binary(max_size=300).map(lambda b: V2_SIGNATURE + b),
        st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=260)).map(
            lambda t: V2_SIGNATURE + bytes([t[0], t[1]]) + len(t[2]).to_bytes(2, "big") + t[2]
        ),
    ),
    st.sampled_from(["v1", "v2", "any"]),
)
def test_proxy_parser_raises_only_its_own_error(data: bytes, mode: str) -> None:
    try:
        result = parse_proxy_header(data, mode)
    except ProxyHeaderError:
        return
    if result is not None:
        consumed, source = result
        assert 0 < consumed <= len(data)
        assert source is None or (isinstance(source[0], str) and 0 <= source[1] <= 65535)
