"""Payload schema per frame type (docs/protocol.md, Schema per type)."""

from __future__ import annotations

from typing import Any

from .protocol import FrameType, Reject


class SchemaError(ValueError):
    reason = Reject.SCHEMA


_TELEMETRY_VALUE_TYPES = (int, float, bool, str)  # bool is an int, listed for clarity
_TELEMETRY = int(FrameType.TELEMETRY)


def check_schema(frame_type: int, value: Any) -> None:
    """Raise SchemaError when `value` (a decoded payload) does not fit `frame_type`."""
    if not isinstance(value, dict):
        raise SchemaError("payload must be a map")
    if frame_type == _TELEMETRY:
        # One pass in the common case (every telemetry frame); a failure falls through to the
        # checks below, which name the problem (keys before values).
        for key, item in value.items():
            if not (isinstance(key, str) and isinstance(item, _TELEMETRY_VALUE_TYPES)):
                break
        else:
            return
    for key in value:
        if not isinstance(key, str):
            raise SchemaError(f"map key {key!r} is not text")
    if frame_type == _TELEMETRY:
        for key, item in value.items():
            if not isinstance(item, _TELEMETRY_VALUE_TYPES):
                raise SchemaError(f"telemetry value of {key!r} must be a number, bool or text")
