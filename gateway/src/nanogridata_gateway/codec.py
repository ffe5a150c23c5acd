"""Sans-IO frame codec: building frames and ACKs, and checking an ACK as a device does.

Pure functions over bytes; no sockets, no clocks. The header is decoded in `protocol`, frames are
split from a byte stream in `stream`, verified in `verifier`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from .keys import tag
from .mac import DeviceMac
from .protocol import (
    FLAG_LONG_TAG,
    HEADER,
    HEADER_LEN,
    LONG_TAG,
    MAGIC,
    MAX_PAYLOAD,
    SHORT_TAG,
    VERSION,
    FrameType,
    parse_header,
)

_ACK_PAYLOADS = tuple(bytes([0x81, status]) for status in range(24))
_ACK_HEADER = HEADER


def build_frame(
    key: bytes,
    model_id: int,
    frame_type: int,
    device_id: int,
    seq: int,
    timestamp_ms: int,
    payload: bytes,
    tag_len: int = SHORT_TAG,
    *,
    flags: int | None = None,
) -> bytes:
    """A complete, authenticated frame (what a device sends, or an ACK)."""
    if tag_len not in (SHORT_TAG, LONG_TAG):
        raise ValueError("tag_len must be 16 or 32")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload larger than {MAX_PAYLOAD} bytes")
    if flags is None:
        flags = FLAG_LONG_TAG if tag_len == LONG_TAG else 0
    body = (
        HEADER.pack(MAGIC, VERSION, model_id, frame_type, flags, len(payload), device_id, seq, timestamp_ms)
        + payload
    )
    return body + tag(key, body, tag_len)


def build_ack(
    key: bytes | DeviceMac, model_id: int, device_id: int, seq: int, now_ms: int, status: int, tag_len: int
) -> bytes:
    """ACK frame: echoes model/device/seq, carries the gateway time and CBOR `[status]`.

    `key` is the device key, or its DeviceMac (the gateway's hot path: no HMAC setup per ACK)."""
    # Once per accepted frame: the checks of build_frame are not needed for this fixed shape.
    flags = FLAG_LONG_TAG if tag_len == LONG_TAG else 0
    body = (
        _ACK_HEADER.pack(MAGIC, VERSION, model_id, 0x80, flags, 2, device_id, seq, now_ms)
        + _ACK_PAYLOADS[status]
    )
    if isinstance(key, DeviceMac):
        return body + key.digest(body)[:tag_len]
    return body + hmac.digest(key, body, "sha256")[:tag_len]


def parse_ack_status(payload: bytes) -> int:
    """The status of an ACK payload (`81 0s`); ValueError otherwise."""
    if len(payload) != 2 or payload[0] != 0x81 or payload[1] > 23:
        raise ValueError("ACK payload is not a one-element CBOR array of a small integer")
    return payload[1]


@dataclass(frozen=True, slots=True)
class Ack:
    model_id: int
    device_id: int
    seq: int
    timestamp_ms: int
    status: int
    tag_len: int


def verify_ack(key: bytes, frame: bytes) -> Ack:
    """Check an ACK frame as a device does (type, length, tag); ValueError when it is not valid."""
    if len(frame) < HEADER_LEN:
        raise ValueError("short ACK")
    header = parse_header(frame)
    if header.version != VERSION or header.frame_type != FrameType.ACK or len(frame) != header.frame_len:
        raise ValueError("not an ACK frame")
    body_end = HEADER_LEN + header.payload_len
    if not hmac.compare_digest(tag(key, frame[:body_end], header.tag_len), frame[body_end:]):
        raise ValueError("ACK tag does not verify")
    status = parse_ack_status(frame[HEADER_LEN:body_end])
    return Ack(header.model_id, header.device_id, header.seq, header.timestamp_ms, status, header.tag_len)
