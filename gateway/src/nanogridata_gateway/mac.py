"""HMAC-SHA256 with a device key whose padded-key states are hashed once (RFC 2104, section 4).

Why not hmac.digest: with OpenSSL 3 every one-shot call sets the HMAC up again (algorithm fetch,
key padding, two extra SHA-256 blocks): 2.4 µs for a 124-byte frame, against 0.9 µs for copying
the two precomputed states. The gateway computes one tag per frame and one per ACK. Results are
byte-identical to hmac.digest(key, msg, "sha256"): the protocol vectors (frame tags, ACK
tags) go through this path in tests/test_vectors.py.
"""

from __future__ import annotations

import hashlib

_BLOCK = 64  # SHA-256 block size
# key XOR ipad / opad, as the standard library's hmac module computes them
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """One HMAC-SHA256 with a key used once (a key of at most 64 bytes): the same padded-key
    construction without keeping the states, cheaper than hmac.digest's OpenSSL set-up."""
    padded = key.ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(padded.translate(_IPAD) + msg).digest()
    return hashlib.sha256(padded.translate(_OPAD) + inner).digest()


class DeviceMac:
    """HMAC-SHA256 keyed with one device key. About 0.5 KB each (two OpenSSL hash states)."""

    __slots__ = ("_inner", "_outer", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        padded = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(padded.translate(_IPAD))
        self._outer = hashlib.sha256(padded.translate(_OPAD))

    def digest(self, msg: bytes) -> bytes:
        """The full 32-byte HMAC-SHA256 of `msg`."""
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()
