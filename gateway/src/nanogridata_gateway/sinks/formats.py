"""Record encodings shared by the sinks: the JSON record and InfluxDB line protocol."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime
from typing import Any

import cbor2

from ..protocol import FRAME_TYPE_NAMES
from ..records import Record
from ..spool import Row


def rfc3339_ms(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class Unencodable(ValueError):
    """A sink cannot represent this record; the message is the dead letter's reason."""


class KeyCollision(Unencodable):
    """Two distinct CBOR map keys would become the same JSON key (e.g. 1 and "1")."""


def _json_key(key: Any) -> str:
    """A CBOR map key as a JSON object key: text as is, integers in decimal, byte strings in
    base64 (as byte-string values are). Distinct keys of one type never meet; keys of different
    types may (1 and "1"), and then the record is refused rather than a value silently lost."""
    if type(key) is str:
        return key
    if isinstance(key, bytes):
        return base64.b64encode(key).decode("ascii")
    return str(key)


def _jsonable(value: Any) -> Any:
    """CBOR values as JSON: byte strings become base64 text (CBOR tags are refused by ingest);
    raises KeyCollision rather than merging two map keys."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            name = _json_key(key)
            if name in result:
                other = next(k for k in value if k is not key and _json_key(k) == name)
                raise KeyCollision(f"CBOR map keys {other!r} and {key!r} would both become JSON key {name!r}")
            result[name] = _jsonable(item)
        return result
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value


def decode_payload(record: Record) -> Any:
    return cbor2.loads(record.payload)


def _raw_payload(record: Record) -> dict[str, str]:
    return {"cbor_base64": base64.b64encode(record.payload).decode("ascii")}


def json_record(record: Record, strict: bool = True) -> dict[str, Any]:
    """The collector's JSON record (http_json, jsonl and the dead-letter file).

    A payload whose map keys would collide as JSON keys raises KeyCollision (strict), or, with
    strict=False (dead letters, the command log: places that must never refuse), is kept as its
    raw CBOR in base64 like an undecodable payload."""
    try:
        decoded = decode_payload(record)
    except Exception:
        payload: Any = _raw_payload(record)
    else:
        try:
            payload = _jsonable(decoded)
        except KeyCollision:
            if strict:
                raise
            payload = _raw_payload(record)
    return {
        "source": f"nanogridata_0x{record.model_id:02x}",
        "type": FRAME_TYPE_NAMES.get(record.frame_type, f"0x{record.frame_type:02x}"),
        "modelId": record.model_id,
        "deviceId": record.device_id,
        "seq": record.seq,
        "timestamp": rfc3339_ms(record.timestamp_ms),
        "receivedAt": rfc3339_ms(record.received_ms),
        "idempotencyKey": record.idempotency_key,
        "payload": payload,
    }


def json_bytes(record: Record, strict: bool = True) -> bytes:
    return json.dumps(json_record(record, strict), separators=(",", ":"), ensure_ascii=False).encode()


# --- InfluxDB line protocol -------------------------------------------------------------

_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_escaped_keys: dict[str, str] = {}  # field names repeat across frames: escape each once
_MAX_CACHED_KEYS = 10_000


def _escape_key(key: str) -> str:
    escaped = _escaped_keys.get(key)
    if escaped is None:
        escaped = key.translate(_KEY_ESCAPES)
        if len(_escaped_keys) < _MAX_CACHED_KEYS:
            _escaped_keys[key] = escaped
    return escaped


def _field_value(value: Any, text_fields: bool) -> str | None:
    kind = type(value)
    if kind is float:
        return repr(value) if math.isfinite(value) else None
    if kind is int:
        # Always floats: an integer field in one frame and a float in the next would be a type
        # conflict (HTTP 400) in InfluxDB 1.x.
        return repr(float(value))
    if kind is bool:
        return "true" if value else "false"
    if kind is str and text_fields:
        text: str = value
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return None


def influx_line_row(row: Row, measurement_prefix: str, text_fields: bool = False) -> bytes | None:
    """One point from a spool row: measurement per model, tags device/model (and type when not
    TELEMETRY), the payload map's scalar values as fields, the frame's timestamp in ns.
    None when the payload has no field a time-series database can store."""
    _, model_id, frame_type, device_id, _, timestamp_ms, _, payload_bytes, _ = row
    try:
        payload = cbor2.loads(payload_bytes)
    except Exception:
        return None
    if type(payload) is not dict:
        return None
    fields = []
    for key, value in payload.items():
        rendered = _field_value(value, text_fields)
        if rendered is not None and type(key) is str and key:
            fields.append(_escape_key(key) + "=" + rendered)
    if not fields:
        return None
    tags = f"device={device_id},model=0x{model_id:02x}"
    if frame_type != 0x01:
        tags += f",type={FRAME_TYPE_NAMES.get(frame_type, frame_type)}"
    return (
        f"{measurement_prefix}_0x{model_id:02x},{tags} {','.join(fields)} {timestamp_ms * 1_000_000}"
    ).encode()


def influx_line(record: Record, measurement_prefix: str, text_fields: bool = False) -> bytes | None:
    row = (
        0,
        record.model_id,
        record.frame_type,
        record.device_id,
        record.seq,
        record.timestamp_ms,
        record.received_ms,
        record.payload,
        0,
    )
    return influx_line_row(row, measurement_prefix, text_fields)
