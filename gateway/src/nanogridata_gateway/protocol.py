"""Protocol v1 (docs/protocol.md): header layout and its one decoder, types, statuses, rejection
reasons."""

from __future__ import annotations

import struct
from enum import IntEnum, StrEnum
from typing import Final, NamedTuple

MAGIC: Final = b"\xc1\x53"
VERSION: Final = 1
# magic, version, model, type, flags, payload length, device id, sequence, timestamp
HEADER: Final = struct.Struct(">2sBBBBHIIQ")
HEADER_LEN: Final = HEADER.size  # 24
MAX_PAYLOAD: Final = 1024
SHORT_TAG: Final = 16
LONG_TAG: Final = 32
FLAG_LONG_TAG: Final = 0x01
RESERVED_FLAGS: Final = 0xFE
MAX_FRAME: Final = HEADER_LEN + MAX_PAYLOAD + LONG_TAG
HKDF_SALT: Final = b"nanogridata/v1"
FUTURE_SKEW_MS: Final = 60_000
DEFAULT_MAX_AGE_S: Final = 86_400


class FrameType(IntEnum):
    TELEMETRY = 0x01
    EVENT = 0x02
    CONFIG = 0x03
    COMMAND = 0x04
    ACK = 0x80


# The types a device sends, by name (what routes name; ACK goes from the gateway to a device only).
FRAME_TYPES: Final = {t.name: int(t) for t in FrameType if t != FrameType.ACK}
FRAME_TYPE_NAMES: Final = {v: k for k, v in FRAME_TYPES.items()}
DEVICE_TYPES: Final = frozenset(FRAME_TYPES.values())
TYPE_NAMES: Final = {int(t): t.name.lower() for t in FrameType}


class AckStatus(IntEnum):
    OK = 0
    DUPLICATE = 1
    STALE = 2
    INVALID = 3
    BUSY = 4


class Reject(StrEnum):
    """Why a frame is dropped or not answered OK: the `reason` label values of
    nanogridata_frames_rejected_total (docs/metrics.md), in check order."""

    BAD_MAGIC = "bad_magic"
    BAD_VERSION = "bad_version"
    RESERVED_FLAGS = "reserved_flags"
    BAD_TYPE = "bad_type"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNKNOWN_MODEL = "unknown_model"
    SHORT_TAG = "short_tag"
    BAD_MAC = "bad_mac"
    STALE = "stale"
    FUTURE = "future"
    DUPLICATE = "duplicate"
    CBOR_MALFORMED = "cbor_malformed"
    CBOR_LIMITS = "cbor_limits"
    SCHEMA = "schema"
    BUSY = "busy"
    RATE_LIMITED = "rate_limited"
    BUFFER_OVERFLOW = "buffer_overflow"


REASONS: Final = tuple(r.value for r in Reject)


# --- the header: its layout is known here only ------------------------------------------------------


class Header(NamedTuple):
    """The 24 header bytes, decoded (no validation)."""

    magic: bytes
    version: int
    model_id: int
    frame_type: int
    flags: int
    payload_len: int
    device_id: int
    seq: int
    timestamp_ms: int

    @property
    def tag_len(self) -> int:
        return LONG_TAG if self.flags & FLAG_LONG_TAG else SHORT_TAG

    @property
    def frame_len(self) -> int:
        return HEADER_LEN + self.payload_len + self.tag_len


# The header fields at an offset as a plain tuple, in Header's order (the verifier's hot path: no
# object and no Python-level function per frame): unpack_header(data, offset=0).
unpack_header: Final = HEADER.unpack_from


def parse_header(data: bytes | bytearray | memoryview, offset: int = 0) -> Header:
    """Decode the 24 header bytes at `offset` (no validation beyond the magic)."""
    header = Header._make(HEADER.unpack_from(data, offset))
    if header.magic != MAGIC:
        raise ValueError("bad magic")
    return header


def header_fault(magic: bytes, version: int, frame_type: int, flags: int, payload_len: int) -> Reject | None:
    """The structural check of a device frame's header fields: the first rule it breaks, or None."""
    if magic != MAGIC:
        return Reject.BAD_MAGIC
    if version != VERSION:
        return Reject.BAD_VERSION
    if flags & RESERVED_FLAGS:
        return Reject.RESERVED_FLAGS
    if frame_type not in DEVICE_TYPES:
        return Reject.BAD_TYPE
    if payload_len > MAX_PAYLOAD:
        return Reject.PAYLOAD_TOO_LARGE
    return None


# What a stream splitter reads of a header: magic, flags, payload length (HEADER's first 8 bytes;
# version, model and type skipped): unpack_prefix(data, offset) -> (magic, flags, payload_len).
_PREFIX: Final = struct.Struct(">2sxxxBH")
assert _PREFIX.size == HEADER.size - 16 and HEADER.format.startswith(">2sBBBBH")
unpack_prefix: Final = _PREFIX.unpack_from
