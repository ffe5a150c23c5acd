"""Fuzz run of the decoder and the whole verification pipeline with mutated valid inputs.

Bounded by NGD_FUZZ_ITERATIONS (default 20,000 per test; CI uses that). Deterministic seed, so a
failure reproduces; NGD_FUZZ_SEED picks another corpus.
"""

from __future__ import annotations

import os
import random

from nanogridata_gateway.cbor_limits import CborError, decode
from nanogridata_gateway.protocol import AckStatus
from nanogridata_gateway.replay import ReplayWindows
from nanogridata_gateway.stream import FrameStream
from nanogridata_gateway.verifier import ModelSpec, Verifier

from ingest_support import load_vectors

ITERATIONS = int(os.environ.get("NGD_FUZZ_ITERATIONS", "20000"))
SEED = int(os.environ.get("NGD_FUZZ_SEED", "1"))
V = load_vectors()


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 2 and buf:
            del buf[rng.randrange(len(buf))]
        else:
            buf.insert(rng.randrange(len(buf) + 1), rng.randrange(256))
    return bytes(buf)


def test_fuzz_decoder_only_cbor_errors() -> None:
    rng = random.Random(SEED)
    corpus = [bytes.fromhex(f["payload_hex"]) for f in V["frames"]]
    corpus += [bytes.fromhex(c["frame_hex"])[24:-16] for c in V["invalid"]]
    decoded = rejected = 0
    for _ in range(ITERATIONS):
        data = mutate(rng, rng.choice(corpus))
        try:
            decode(data)
            decoded += 1
        except CborError:
            rejected += 1
    assert decoded + rejected == ITERATIONS and rejected > 0 and decoded > 0


def test_fuzz_pipeline_never_accepts_mutations() -> None:
    rng = random.Random(SEED + 1)
    secrets = {e["model_id"]: bytes.fromhex(e["master_secret_hex"]) for e in V["hkdf"]}
    verifier = Verifier({m: ModelSpec(m, s) for m, s in secrets.items()}, ReplayWindows())
    originals = [(bytes.fromhex(f["frame_hex"]), f["now_ms"]) for f in V["frames"]]
    reasons: dict[str | None, int] = {}
    for _ in range(ITERATIONS):
        frame, now = rng.choice(originals)
        mutated = mutate(rng, frame)
        stream = FrameStream()
        for item in stream.feed(mutated):
            if isinstance(item, str):
                reasons[item] = reasons.get(item, 0) + 1
                continue
            verdict = verifier.verify(item, now)
            reasons[verdict.reason] = reasons.get(verdict.reason, 0) + 1
            if item != frame:  # a mutation that left the frame intact (e.g. in trailing bytes) is fine
                assert verdict.status in (None,), (mutated.hex(), verdict)
            else:
                assert verdict.status == AckStatus.OK
    assert reasons.get("bad_mac", 0) > ITERATIONS // 4
