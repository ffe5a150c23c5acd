"""Protocol v1 constants (docs/protocol.md): header layout, types, statuses, rejection reasons."""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final

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


DEVICE_TYPES: Final = frozenset({FrameType.TELEMETRY, FrameType.EVENT, FrameType.CONFIG, FrameType.COMMAND})
TYPE_NAMES: Final = {int(t): t.name.lower() for t in FrameType}


class AckStatus(IntEnum):
    OK = 0
    DUPLICATE = 1
    STALE = 2
    INVALID = 3
    BUSY = 4


# The `reason` label values of nanogridata_frames_rejected_total (docs/metrics.md), in check order.
REASONS: Final = (
    "bad_magic",
    "bad_version",
    "reserved_flags",
    "bad_type",
    "payload_too_large",
    "unknown_model",
    "short_tag",
    "bad_mac",
    "stale",
    "future",
    "duplicate",
    "cbor_malformed",
    "cbor_limits",
    "schema",
    "busy",
    "rate_limited",
    "buffer_overflow",
)
