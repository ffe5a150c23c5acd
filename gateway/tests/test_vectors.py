"""The gateway reproduces and accepts/rejects every vector of docs/protocol-vectors.json."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import cbor2
import pytest

from nanogridata_gateway.codec import build_ack, build_frame, parse_ack_status
from nanogridata_gateway.keys import derive_device_key
from nanogridata_gateway.protocol import REASONS, AckStatus, parse_header
from nanogridata_gateway.replay import ReplayWindows
from nanogridata_gateway.stream import FrameStream
from nanogridata_gateway.verifier import ModelSpec, Verifier

from ingest_support import REPO, load_vectors

V = load_vectors()
SECRETS = {e["model_id"]: bytes.fromhex(e["master_secret_hex"]) for e in V["hkdf"]}


def make_verifier(max_age_s: float = 86_400, high: frozenset[int] = frozenset()) -> Verifier:
    models = {m: ModelSpec(m, s, high_security=m in high) for m, s in SECRETS.items()}
    return Verifier(models, ReplayWindows(), max_age_s=max_age_s)


def test_generator_reproduces_committed_file() -> None:
    gen = REPO / "gateway" / "tools" / "gen_protocol_vectors.py"
    subprocess.run([sys.executable, str(gen), "--check"], check=True)


@pytest.mark.parametrize("case", V["hkdf"], ids=lambda c: f"{c['model_id']:#x}-{c['device_id']:#x}")
def test_hkdf(case: dict[str, Any]) -> None:
    key = derive_device_key(bytes.fromhex(case["master_secret_hex"]), case["model_id"], case["device_id"])
    assert key.hex() == case["device_key_hex"]


@pytest.mark.parametrize("case", V["frames"], ids=lambda c: c["name"])
def test_valid_frame_built_and_accepted(case: dict[str, Any]) -> None:
    key = bytes.fromhex(case["key_hex"])
    payload = bytes.fromhex(case["payload_hex"])
    built = build_frame(
        key,
        case["model_id"],
        case["type"],
        case["device_id"],
        case["seq"],
        case["timestamp_ms"],
        payload,
        case["tag_len"],
    )
    assert built.hex() == case["frame_hex"]
    # the payload decodes (independent decoder) to exactly the listed items, in order
    decoded = cbor2.loads(payload)
    assert list(decoded.items()) == [(i["key"], i["value"]) for i in case["payload_items"]]

    verifier = make_verifier()
    verdict = verifier.verify(bytes.fromhex(case["frame_hex"]), case["now_ms"])
    assert verdict.reason is None and verdict.status == AckStatus.OK
    assert (verdict.model_id, verdict.device_id, verdict.seq) == (
        case["model_id"],
        case["device_id"],
        case["seq"],
    )
    assert verdict.key == key
    ack = build_ack(
        key, case["model_id"], case["device_id"], case["seq"], case["now_ms"], AckStatus.OK, case["tag_len"]
    )
    assert ack.hex() == case["expect_ack_hex"]


@pytest.mark.parametrize("case", V["acks"], ids=lambda c: c["name"])
def test_ack(case: dict[str, Any]) -> None:
    key = bytes.fromhex(case["key_hex"])
    ack = build_ack(
        key,
        case["model_id"],
        case["device_id"],
        case["seq"],
        case["timestamp_ms"],
        case["status"],
        case["tag_len"],
    )
    assert ack.hex() == case["frame_hex"]
    header = parse_header(ack)
    assert header.frame_type == 0x80 and header.frame_len == len(ack)
    assert parse_ack_status(ack[24 : 24 + header.payload_len]) == case["status"]


@pytest.mark.parametrize("case", V["invalid"], ids=lambda c: c["name"])
def test_invalid_frame_rejected_with_reason(case: dict[str, Any]) -> None:
    raw = bytes.fromhex(case["frame_hex"])
    high = frozenset({case["model_id"]}) if case["security"] == "high" else frozenset()
    verifier = make_verifier(case["max_age_s"], high)
    # through the stream splitter first: oversized frames are skipped there, bad magic ends the stream
    stream = FrameStream()
    items = stream.feed(raw)
    assert len(items) == 1, items
    item = items[0]
    if isinstance(item, str):
        assert item == case["expect_reason"]
        return
    verdict = verifier.verify(item, case["now_ms"])
    assert verdict.reason == case["expect_reason"]
    assert verdict.status == case["expect_ack_status"]
    if case["expect_ack_status"] is not None:
        ack = build_ack(
            verdict.key,
            verdict.model_id,
            verdict.device_id,
            verdict.seq,
            case["now_ms"],
            verdict.status,
            verdict.tag_len,
        )
        assert ack.hex() == case["expect_ack_hex"]


def test_vectors_cover_every_single_frame_reason() -> None:
    connection_level = {"duplicate", "busy", "rate_limited", "buffer_overflow"}
    covered = {c["expect_reason"] for c in V["invalid"]}
    assert covered == set(REASONS) - connection_level
