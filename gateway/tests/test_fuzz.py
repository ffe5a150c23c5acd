"""Fuzz run of the decoder and the whole verification pipeline with mutated valid inputs.

Bounded by NGD_FUZZ_ITERATIONS (default 20,000 per test; CI uses that). Deterministic seed, so a
failure reproduces; NGD_FUZZ_SEED picks another corpus.
"""

from __future__ import annotations

import hmac
import os
import random

import cbor2

from nanogridata_gateway.cbor_limits import CborError, decode
from nanogridata_gateway.codec import build_frame
from nanogridata_gateway.keys import ModelKeys, derive_device_key
from nanogridata_gateway.mac import hmac_sha256
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


def test_forged_frames_with_random_device_ids_do_not_enter_the_key_cache() -> None:
    """A cache miss costs a key derivation; forged frames from random device ids used to fill the
    cache and evict the devices that really send, so their next frames paid it again."""
    rng = random.Random(SEED + 2)
    secret = bytes.fromhex(V["hkdf"][0]["master_secret_hex"])
    verifier = Verifier({0x10: ModelSpec(0x10, secret)}, ReplayWindows(), mac_cache_size=8)
    now = 1_790_000_000_000
    payload = cbor2.dumps({"t": 21})
    key = derive_device_key(secret, 0x10, 1)
    assert verifier.verify(build_frame(key, 0x10, 0x01, 1, 1, now, payload, 16), now).status == AckStatus.OK
    for seq in range(2000):
        forged = build_frame(rng.randbytes(32), 0x10, 0x01, rng.randrange(2**32), seq, now, payload, 16)
        assert verifier.verify(forged, now).reason == "bad_mac"

    def no_derivation(model_id: int, device_id: int) -> bytes:
        raise AssertionError(f"device {device_id} was evicted: its key is derived again")

    verifier.device_key = no_derivation  # type: ignore[method-assign]
    assert verifier.verify(build_frame(key, 0x10, 0x01, 1, 2, now, payload, 16), now).status == AckStatus.OK
    assert verifier.cached_devices == 1


def test_model_keys_match_the_reference_derivation() -> None:
    rng = random.Random(SEED + 3)
    for _ in range(2000):
        secret = rng.randbytes(rng.choice([32, 48, 64, 200]))
        model, device = rng.randrange(256), rng.randrange(2**32)
        assert ModelKeys(secret).device_key(model, device) == derive_device_key(secret, model, device)
        message = rng.randbytes(rng.randrange(1100))
        key = rng.randbytes(32)
        assert hmac_sha256(key, message) == hmac.digest(key, message, "sha256")
