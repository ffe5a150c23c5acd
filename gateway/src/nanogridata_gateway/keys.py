"""Key material: HKDF-SHA256 (RFC 5869) device-key derivation and master-secret generation."""

from __future__ import annotations

import hmac
import secrets

from .protocol import HKDF_SALT

MIN_MASTER_SECRET_BYTES = 32


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


def new_master_secret(nbytes: int = 32) -> bytes:
    if nbytes < MIN_MASTER_SECRET_BYTES:
        raise ValueError(f"a master secret needs at least {MIN_MASTER_SECRET_BYTES} bytes")
    return secrets.token_bytes(nbytes)


def tag(key: bytes, body: bytes, tag_len: int) -> bytes:
    """Leading `tag_len` bytes of HMAC-SHA256(key, body)."""
    return hmac.digest(key, body, "sha256")[:tag_len]
