"""Key material: HKDF-SHA256 (RFC 5869) device-key derivation and master-secret generation."""

from __future__ import annotations

import hmac
import itertools
import secrets

from .mac import DeviceMac
from .protocol import HKDF_SALT

MIN_MASTER_SECRET_BYTES = 32
MAX_SECRET_BYTES = 1024
# 32 random bytes show fewer than 16 distinct values (or 16 distinct steps from one byte to the
# next) with a probability of about 1e-14: a secret that does was not made by a random source.
MIN_DISTINCT_BYTES = 16


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 extract-and-expand with SHA-256."""
    if not 0 < length <= 255 * 32:
        raise ValueError("HKDF length out of range")
    prk = hmac.digest(salt, ikm, "sha256")
    okm = b""
    block = b""
    counter = 1
    while len(okm) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        okm += block
        counter += 1
    return okm[:length]


def derive_device_key(master_secret: bytes, model_id: int, device_id: int) -> bytes:
    """The 32-byte key a device of `model_id` stores (docs/protocol.md, Keys)."""
    info = bytes([model_id]) + device_id.to_bytes(4, "big")
    return hkdf_sha256(master_secret, HKDF_SALT, info, 32)


def secret_weakness(secret: bytes, min_bytes: int = MIN_MASTER_SECRET_BYTES) -> str | None:
    """Why `secret` cannot have come from a random source (too short, all one byte, a repeated
    pattern, a counter, few distinct values), or None. A heuristic: it refuses the secrets that
    people type or copy from examples, it cannot prove that a secret is random."""
    if len(secret) < min_bytes:
        return f"too short ({len(secret)} bytes)"
    if len(secret) > MAX_SECRET_BYTES:
        return f"too long ({len(secret)} bytes, at most {MAX_SECRET_BYTES})"
    if len(set(secret)) < MIN_DISTINCT_BYTES:
        return f"degenerate: only {len(set(secret))} distinct byte values"
    for period in range(1, len(secret) // 2 + 1):
        if secret[period:] == secret[:-period]:
            return f"degenerate: a {period}-byte pattern repeated"
    steps = bytes((b - a) & 0xFF for a, b in itertools.pairwise(secret))
    if len(set(steps)) < MIN_DISTINCT_BYTES:
        return "degenerate: a regular sequence (e.g. counting bytes)"
    return None


class ModelKeys:
    """Derives the device keys of one model, byte-identical to derive_device_key.

    HKDF's extract step depends on the master secret alone, so its output (the PRK) is computed
    once per model and kept as precomputed HMAC states: a device key then costs one HMAC (the
    expand step) instead of two one-shot HMACs with their set-up. That is the price of a frame
    from a device id the gateway has not seen, which any client can send."""

    __slots__ = ("_prk",)

    def __init__(self, master_secret: bytes) -> None:
        self._prk = DeviceMac(hmac.digest(HKDF_SALT, master_secret, "sha256"))

    def device_key(self, model_id: int, device_id: int) -> bytes:
        # L = 32 is one block: T(1) = HMAC(PRK, info || 0x01)
        return self._prk.digest(bytes((model_id,)) + device_id.to_bytes(4, "big") + b"\x01")


def new_master_secret(nbytes: int = 32) -> bytes:
    if not MIN_MASTER_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise ValueError(f"a master secret has {MIN_MASTER_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")
    while True:  # a weak draw has a probability of about 1e-14: practically one pass
        secret = secrets.token_bytes(nbytes)
        if secret_weakness(secret) is None:
            return secret


def tag(key: bytes, body: bytes, tag_len: int) -> bytes:
    """Leading `tag_len` bytes of HMAC-SHA256(key, body)."""
    return hmac.digest(key, body, "sha256")[:tag_len]
