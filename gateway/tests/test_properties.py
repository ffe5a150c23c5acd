"""Property-based tests (hypothesis) of the codec, CBOR limits, replay window and stream splitter."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import cbor2
from hypothesis import assume, given
from hypothesis import strategies as st

from nanogridata_gateway.cbor_limits import CborError, CborLimits, decode
from nanogridata_gateway.codec import build_frame
from nanogridata_gateway.keys import derive_device_key
from nanogridata_gateway.protocol import AckStatus
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
