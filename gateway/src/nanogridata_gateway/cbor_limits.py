"""A strict CBOR (RFC 8949) decoder that enforces the protocol's limits while it decodes.

Raises `CborMalformed` for encodings that are not valid CBOR and `CborLimits` for valid CBOR the
protocol forbids (tags, indefinite lengths, depth, sizes, duplicate keys, unsupported simple
values). Nothing else escapes: the decoder is fuzzed (tests/test_fuzz.py).
"""

from __future__ import annotations

import struct
from typing import Any, Final

from .protocol import Reject

MAX_DEPTH: Final = 4
MAX_STRING: Final = 256
MAX_ARRAY: Final = 64
MAX_MAP: Final = 20

_HALF = struct.Struct(">e")
_SINGLE = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")
_KEY_TYPES = (int, str, bytes)


class CborError(ValueError):
    reason = Reject.CBOR_MALFORMED


class CborMalformed(CborError):
    reason = Reject.CBOR_MALFORMED


class CborLimits(CborError):
    reason = Reject.CBOR_LIMITS


def decode(data: bytes) -> Any:
    """Decode exactly one data item spanning all of `data`."""
    if not data:
        raise CborMalformed("empty payload")
    if 0xA0 <= data[0] <= 0xB7:  # the common case: a small map (telemetry)
        value, pos = _small_map(data)
    else:
        value, pos = _item(data, 0, 1)
    if pos != len(data):
        raise CborMalformed(f"{len(data) - pos} trailing bytes")
    return value


def _item(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    # Hot path (every payload item): the common short forms are handled inline.
    if pos >= len(data):
        raise CborMalformed("truncated: item expected")
    ib = data[pos]
    pos += 1
    major = ib >> 5
    ai = ib & 0x1F
    if ai < 24:
        arg = ai
    elif ai < 28:
        if major == 7:
            return _simple(data, pos, ai)
        end = pos + (1 << (ai - 24))  # 1, 2, 4 or 8 bytes
        if end > len(data):
            raise CborMalformed("truncated head")
        arg = int.from_bytes(data[pos:end], "big")
        pos = end
    elif ai == 31:
        if major == 7:
            raise CborMalformed("break outside an indefinite-length item")
        if major in (2, 3, 4, 5):
            raise CborLimits("indefinite-length items are not allowed")
        raise CborMalformed("indefinite length on an integer or tag")
    else:
        raise CborMalformed(f"reserved additional information {ai}")

    if major == 0:
        return arg, pos
    if major == 3 or major == 2:  # noqa: PLR1714 - ordered by frequency
        if arg > MAX_STRING:
            raise CborLimits(f"string of {arg} bytes (max {MAX_STRING})")
        end = pos + arg
        if end > len(data):
            raise CborMalformed("truncated string")
        if major == 2:
            return bytes(data[pos:end]), end
        try:
            return data[pos:end].decode("utf-8"), end
        except UnicodeDecodeError as exc:
            raise CborMalformed("text is not valid UTF-8") from exc
    if major == 1:
        return -1 - arg, pos
    if major == 7:
        return _simple(data, pos, ai)
    if major == 6:
        raise CborLimits("tags are not allowed")
    if depth > MAX_DEPTH:
        raise CborLimits(f"nesting deeper than {MAX_DEPTH}")
    if major == 4:
        if arg > MAX_ARRAY:
            raise CborLimits(f"array of {arg} items (max {MAX_ARRAY})")
        items = []
        for _ in range(arg):
            value, pos = _item(data, pos, depth + 1)
            items.append(value)
        return items, pos
    # major == 5
    if arg > MAX_MAP:
        raise CborLimits(f"map of {arg} keys (max {MAX_MAP})")
    result: dict[Any, Any] = {}
    for _ in range(arg):
        key, pos = _item(data, pos, depth + 1)
        if type(key) not in _KEY_TYPES:
            raise CborLimits("map keys must be integers, text or byte strings")
        if key in result:
            raise CborLimits(f"duplicate map key {key!r}")
        result[key], pos = _item(data, pos, depth + 1)
    return result, pos


def _small_map(data: bytes) -> tuple[dict[Any, Any], int]:
    """Top-level map with fewer than 24 entries: short text keys and the common scalar values
    (integers from -24 to 2**16-1, floats, text up to 255 bytes, booleans) are decoded inline; every other
    item goes through `_item`, so the result and the errors are the same
    (tests/test_properties.py compares both paths)."""
    count = data[0] & 0x1F
    if count > MAX_MAP:
        raise CborLimits(f"map of {count} keys (max {MAX_MAP})")
    result: dict[Any, Any] = {}
    pos = 1
    size = len(data)
    for _ in range(count):
        ib = data[pos] if pos < size else -1
        if 0x60 <= ib <= 0x77:  # text key shorter than 24 bytes
            end = pos + 1 + (ib & 0x1F)
            if end > size:
                raise CborMalformed("truncated string")
            try:
                key: Any = data[pos + 1 : end].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CborMalformed("text is not valid UTF-8") from exc
            pos = end
        else:
            key, pos = _item(data, pos, 2)
            if type(key) not in _KEY_TYPES:
                raise CborLimits("map keys must be integers, text or byte strings")
        if key in result:
            raise CborLimits(f"duplicate map key {key!r}")
        ib = data[pos] if pos < size else -1
        if 0 <= ib < 0x18:  # small unsigned integer
            result[key] = ib
            pos += 1
        elif ib == 0xFB and pos + 9 <= size:
            result[key] = _DOUBLE.unpack_from(data, pos + 1)[0]
            pos += 9
        elif ib == 0xFA and pos + 5 <= size:
            result[key] = _SINGLE.unpack_from(data, pos + 1)[0]
            pos += 5
        elif ib == 0x19 and pos + 3 <= size:  # 16-bit unsigned integer
            result[key] = (data[pos + 1] << 8) | data[pos + 2]
            pos += 3
        elif 0x60 <= ib <= 0x78:  # text with a length below 256
            if ib == 0x78:
                if pos + 2 > size:
                    raise CborMalformed("truncated head")
                if data[pos + 1] > MAX_STRING:
                    raise CborLimits(f"string of {data[pos + 1]} bytes (max {MAX_STRING})")
                start = pos + 2
                end = start + data[pos + 1]
            else:
                start = pos + 1
                end = start + (ib & 0x1F)
            if end > size:
                raise CborMalformed("truncated string")
            try:
                result[key] = data[start:end].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CborMalformed("text is not valid UTF-8") from exc
            pos = end
        elif ib == 0x18 and pos + 2 <= size:
            result[key] = data[pos + 1]
            pos += 2
        elif 0x20 <= ib < 0x38:  # small negative integer
            result[key] = 0x1F - ib
            pos += 1
        elif ib == 0xF9 and pos + 3 <= size:
            result[key] = _HALF.unpack_from(data, pos + 1)[0]
            pos += 3
        elif ib == 0xF5 or ib == 0xF4:  # noqa: PLR1714 - ordered by frequency
            result[key] = ib == 0xF5
            pos += 1
        else:
            result[key], pos = _item(data, pos, 2)
    return result, pos


def _simple(data: bytes, pos: int, ai: int) -> tuple[Any, int]:
    if ai == 20:
        return False, pos
    if ai == 21:
        return True, pos
    if ai == 22:
        return None, pos
    if ai == 25:
        if pos + 2 > len(data):
            raise CborMalformed("truncated half float")
        return _HALF.unpack_from(data, pos)[0], pos + 2
    if ai == 26:
        if pos + 4 > len(data):
            raise CborMalformed("truncated float")
        return _SINGLE.unpack_from(data, pos)[0], pos + 4
    if ai == 27:
        if pos + 8 > len(data):
            raise CborMalformed("truncated double")
        return _DOUBLE.unpack_from(data, pos)[0], pos + 8
    if ai == 24:
        if pos >= len(data):
            raise CborMalformed("truncated simple value")
        if data[pos] < 32:
            raise CborMalformed("two-byte simple value below 32")
    raise CborLimits("simple values other than false, true and null are not allowed")
