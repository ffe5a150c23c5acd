#!/usr/bin/env python3
"""Generate docs/protocol-vectors.json: the Nanogridata v1 test vectors.

Deliberately independent of the gateway's codec: stdlib only (hashlib, hmac, struct) and a
hand-written CBOR encoder, so a bug in the codec cannot hide in vectors it produced itself.
Deterministic: re-running it must reproduce the committed file byte for byte (a unit test checks).

    python3 gateway/tools/gen_protocol_vectors.py            # rewrite docs/protocol-vectors.json
    python3 gateway/tools/gen_protocol_vectors.py --check    # exit 1 if the file is out of date
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path
from typing import Any

MAGIC = b"\xc1\x53"
SALT = b"nanogridata/v1"
MODELS = (0x10, 0x20, 0x30)
TYPES = {"TELEMETRY": 0x01, "EVENT": 0x02, "CONFIG": 0x03, "COMMAND": 0x04}
ACK = 0x80
STATUS = {"OK": 0, "DUPLICATE": 1, "STALE": 2, "INVALID": 3, "BUSY": 4}
T0 = 1_790_000_000_123  # 2026-09-21, an arbitrary fixed "now"
MAX_AGE_S = 86_400

OUT = Path(__file__).resolve().parents[2] / "docs" / "protocol-vectors.json"


def master_secret(model: int) -> bytes:
    """TEST ONLY secrets: public, derived from a label. Never use them in a deployment."""
    return hashlib.sha256(f"nanogridata TEST ONLY master secret model 0x{model:02x}".encode()).digest()


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def device_key(model: int, device: int) -> bytes:
    return hkdf_sha256(master_secret(model), SALT, bytes([model]) + device.to_bytes(4, "big"))


# --- a tiny CBOR encoder: exactly the forms the firmware emits ---------------------------------
def head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([(major << 5) | value])
    if value < 0x100:
        return bytes([(major << 5) | 24, value])
    if value < 0x10000:
        return bytes([(major << 5) | 25]) + value.to_bytes(2, "big")
    if value < 0x1_0000_0000:
        return bytes([(major << 5) | 26]) + value.to_bytes(4, "big")
    return bytes([(major << 5) | 27]) + value.to_bytes(8, "big")


def enc_int(v: int) -> bytes:
    return head(0, v) if v >= 0 else head(1, -1 - v)


def enc_text(s: str) -> bytes:
    b = s.encode("utf-8")
    return head(3, len(b)) + b


def enc_item(kind: str, value: Any) -> bytes:
    if kind == "int":
        return enc_int(value)
    if kind == "float32":
        packed = struct.pack(">f", value)
        assert struct.unpack(">f", packed)[0] == value, f"{value} is not exact in float32"
        return b"\xfa" + packed
    if kind == "float64":
        return b"\xfb" + struct.pack(">d", value)
    if kind == "bool":
        return b"\xf5" if value else b"\xf4"
    if kind == "text":
        return enc_text(value)
    raise ValueError(kind)


def enc_flat_map(items: list[dict[str, Any]]) -> bytes:
    out = head(5, len(items))
    for it in items:
        out += enc_text(it["key"]) + enc_item(it["type"], it["value"])
    return out


# --- frames -------------------------------------------------------------------------------------
def frame(
    model: int,
    ftype: int,
    device: int,
    seq: int,
    ts: int,
    payload: bytes,
    key: bytes,
    tag_len: int = 16,
    *,
    magic: bytes = MAGIC,
    version: int = 1,
    flags: int | None = None,
    declared_len: int | None = None,
) -> bytes:
    if flags is None:
        flags = 0x01 if tag_len == 32 else 0x00
    n = len(payload) if declared_len is None else declared_len
    header = magic + struct.pack(">BBBBHIIQ", version, model, ftype, flags, n, device, seq, ts)
    assert len(header) == 24
    body = header + payload
    return body + hmac.new(key, body, hashlib.sha256).digest()[:tag_len]


def ack(model: int, device: int, seq: int, now: int, status: int, key: bytes, tag_len: int) -> bytes:
    return frame(model, ACK, device, seq, now, b"\x81" + enc_int(status), key, tag_len)


PAYLOADS: dict[tuple[int, str], list[dict[str, Any]]] = {
    (0x10, "TELEMETRY"): [
        {"key": "p", "type": "float32", "value": 1013.25},
        {"key": "t", "type": "float32", "value": 21.5},
        {"key": "bat", "type": "int", "value": 3712},
    ],
    (0x20, "TELEMETRY"): [
        {"key": "co2", "type": "int", "value": 415},
        {"key": "voc", "type": "float64", "value": 0.125},
        {"key": "ok", "type": "bool", "value": True},
    ],
    (0x30, "TELEMETRY"): [
        {"key": "temp", "type": "float32", "value": -4.75},
        {"key": "hum", "type": "int", "value": 55},
        {"key": "lux", "type": "int", "value": 70000},
        {"key": "pm25", "type": "float64", "value": 12.3},
        {"key": "fw", "type": "text", "value": "1.4.2"},
        {"key": "neg", "type": "int", "value": -1000},
        {"key": "big", "type": "int", "value": 5_000_000_000},
        {"key": "low", "type": "bool", "value": False},
    ],
}
GENERIC: dict[str, list[dict[str, Any]]] = {
    "EVENT": [
        {"key": "event", "type": "text", "value": "door_open"},
        {"key": "code", "type": "int", "value": 7},
    ],
    "CONFIG": [
        {"key": "interval_s", "type": "int", "value": 60},
        {"key": "unit", "type": "text", "value": "hPa"},
    ],
    "COMMAND": [
        {"key": "cmd", "type": "text", "value": "reboot"},
        {"key": "delay_s", "type": "int", "value": 5},
    ],
}
DEVICES = {0x10: 0x00000001, 0x20: 0xDEADBEEF, 0x30: 0x7FFFFFFF}


def frame_vector(
    name: str,
    model: int,
    tname: str,
    device: int,
    seq: int,
    ts: int,
    tag_len: int,
    items: list[dict[str, Any]],
    now: int,
) -> dict[str, Any]:
    key = device_key(model, device)
    payload = enc_flat_map(items)
    ftype = TYPES[tname]
    return {
        "name": name,
        "model_id": model,
        "type": ftype,
        "type_name": tname,
        "flags": 0x01 if tag_len == 32 else 0x00,
        "tag_len": tag_len,
        "device_id": device,
        "seq": seq,
        "timestamp_ms": ts,
        "now_ms": now,
        "key_hex": key.hex(),
        "payload_items": items,
        "payload_hex": payload.hex(),
        "frame_hex": frame(model, ftype, device, seq, ts, payload, key, tag_len).hex(),
        "expect_ack_hex": ack(model, device, seq, now, STATUS["OK"], key, tag_len).hex(),
    }


def build() -> dict[str, Any]:
    hkdf = [
        {
            "master_secret_hex": master_secret(m).hex(),
            "model_id": m,
            "device_id": d,
            "device_key_hex": device_key(m, d).hex(),
        }
        for m in MODELS
        for d in (0x00000000, 0x00000001, 0xDEADBEEF, 0xFFFFFFFF)
    ]

    frames: list[dict[str, Any]] = []
    seq = 1
    for m in MODELS:
        dev = DEVICES[m]
        for tname in TYPES:
            items = PAYLOADS.get((m, tname)) or GENERIC[tname]
            for tag_len in (16, 32):
                frames.append(
                    frame_vector(
                        f"model{m:02x}_{tname.lower()}_tag{tag_len}",
                        m,
                        tname,
                        dev,
                        seq,
                        T0 - 1500,
                        tag_len,
                        items,
                        T0,
                    )
                )
                seq += 1
    tele = PAYLOADS[(0x10, "TELEMETRY")]
    frames += [
        frame_vector("timestamp_zero_clockless", 0x10, "TELEMETRY", 0x00000001, 1000, 0, 16, tele, T0),
        frame_vector(
            "future_edge_60s_accepted", 0x10, "TELEMETRY", 0x00000001, 1001, T0 + 60_000, 16, tele, T0
        ),
        frame_vector(
            "age_edge_max_age_accepted",
            0x10,
            "TELEMETRY",
            0x00000001,
            1002,
            T0 - MAX_AGE_S * 1000,
            16,
            tele,
            T0,
        ),
        frame_vector("seq_zero", 0x20, "TELEMETRY", 0x00000002, 0, T0, 16, PAYLOADS[(0x20, "TELEMETRY")], T0),
        frame_vector(
            "seq_max", 0x20, "TELEMETRY", 0x00000002, 0xFFFFFFFF, T0, 32, PAYLOADS[(0x20, "TELEMETRY")], T0
        ),
        frame_vector("telemetry_empty_map", 0x30, "TELEMETRY", 0x00000003, 7, T0, 32, [], T0),
    ]

    acks = []
    for i, (sname, status) in enumerate(STATUS.items()):
        for m, tag_len in ((0x10, 16), (0x20, 32), (0x30, 16 if i % 2 else 32)):
            dev = DEVICES[m]
            key = device_key(m, dev)
            acks.append(
                {
                    "name": f"ack_{sname.lower()}_model{m:02x}_tag{tag_len}",
                    "model_id": m,
                    "device_id": dev,
                    "seq": 42 + i,
                    "timestamp_ms": T0,
                    "status": status,
                    "status_name": sname,
                    "tag_len": tag_len,
                    "key_hex": key.hex(),
                    "frame_hex": ack(m, dev, 42 + i, T0, status, key, tag_len).hex(),
                }
            )

    invalid = build_invalid()
    return {
        "version": 1,
        "comment": "Nanogridata v1 test vectors, generated by gateway/tools/gen_protocol_vectors.py. "
        "Master secrets here are public TEST values: never deploy them.",
        "constants": {
            "magic_hex": MAGIC.hex(),
            "hkdf_salt": SALT.decode(),
            "header_len": 24,
            "max_payload": 1024,
            "future_skew_ms": 60_000,
            "default_max_age_s": MAX_AGE_S,
            "types": TYPES | {"ACK": ACK},
            "ack_status": STATUS,
        },
        "hkdf": hkdf,
        "frames": frames,
        "acks": acks,
        "invalid": invalid,
    }


def build_invalid() -> list[dict[str, Any]]:
    m, dev, seq, now = 0x10, 0x01020304, 500, T0
    key = device_key(m, dev)
    good = enc_flat_map(PAYLOADS[(0x10, "TELEMETRY")])
    out: list[dict[str, Any]] = []

    def add(
        name: str,
        raw: bytes,
        reason: str,
        *,
        model: int = m,
        k: bytes = key,
        security: str = "normal",
        ack_status: str | None = None,
        tag_len: int = 16,
        device: int = dev,
        s: int = seq,
    ) -> None:
        v: dict[str, Any] = {
            "name": name,
            "frame_hex": raw.hex(),
            "key_hex": k.hex(),
            "model_id": model,
            "now_ms": now,
            "max_age_s": MAX_AGE_S,
            "security": security,
            "expect_reason": reason,
            "expect_ack_status": None if ack_status is None else STATUS[ack_status],
        }
        if ack_status is not None:
            v["expect_ack_hex"] = ack(model, device, s, now, STATUS[ack_status], k, tag_len).hex()
        out.append(v)

    def fr(payload: bytes, ftype: int = 0x01, ts: int = now - 1000, **kw: Any) -> bytes:
        return frame(
            kw.pop("model", m), ftype, dev, seq, ts, payload, kw.pop("k", key), kw.pop("tag_len", 16), **kw
        )

    # structural: dropped, no ACK (tags are valid over the mutated bytes, so only the named fault exists)
    add("bad_magic", fr(good, magic=b"\xc1\x54"), "bad_magic")
    add("bad_magic_first_byte", fr(good, magic=b"\x00\x53"), "bad_magic")
    add("bad_version_0", fr(good, version=0), "bad_version")
    add("bad_version_2", fr(good, version=2), "bad_version")
    add("reserved_flags_bit1", fr(good, flags=0x02), "reserved_flags")
    add("reserved_flags_bit7_with_long_tag", fr(good, flags=0x81, tag_len=32), "reserved_flags")
    add("bad_type_0", fr(good, ftype=0x00), "bad_type")
    add("bad_type_5", fr(good, ftype=0x05), "bad_type")
    add("bad_type_ack_from_device", fr(b"\x81\x00", ftype=0x80), "bad_type")
    big = head(5, 1) + enc_text("blob") + head(2, 1016) + bytes(1016)
    assert len(big) == 1025
    add("payload_too_large_1025", fr(big), "payload_too_large")
    add("payload_len_65535_header_only", fr(b"", declared_len=0xFFFF), "payload_too_large")
    add("unknown_model_0x40", fr(good, model=0x40, k=device_key(0x10, dev)), "unknown_model", model=0x40)
    key30 = device_key(0x30, dev)
    add(
        "short_tag_on_high_security_model",
        fr(good, model=0x30, k=key30),
        "short_tag",
        model=0x30,
        k=key30,
        security="high",
    )
    # authentication: dropped, no ACK
    f = bytearray(fr(good))
    f[-1] ^= 0x01
    add("bad_mac_flipped_tag_bit", bytes(f), "bad_mac")
    f = bytearray(fr(good))
    f[30] ^= 0x80
    add("bad_mac_flipped_payload_bit", bytes(f), "bad_mac")
    f = bytearray(fr(good))
    f[15] ^= 0x01  # sequence number changed after signing
    add("bad_mac_modified_seq", bytes(f), "bad_mac")
    add("bad_mac_other_device_key", fr(good, k=device_key(0x10, dev + 1)), "bad_mac")
    add("bad_mac_other_model_key", fr(good, k=device_key(0x20, dev)), "bad_mac")
    long32 = fr(good, tag_len=32)
    add(
        "bad_mac_long_tag_truncated_flag_cleared", long32[:24] + long32[24:-16], "bad_mac"
    )  # flags say 32, only 16 present -> incomplete
    out.pop()  # incomplete frames are not a rejection (the stream waits): keep the list honest
    f = bytearray(fr(good, tag_len=32))
    f[5] = 0x00  # claims a 16-byte tag: the first 16 bytes of the real tag follow, then 16 spare bytes
    add("bad_mac_flag_cleared", bytes(f[:-16]), "bad_mac")
    # timestamp window: authentic, ACK STALE
    add("stale_older_than_max_age", fr(good, ts=now - MAX_AGE_S * 1000 - 1), "stale", ack_status="STALE")
    add("future_more_than_60s", fr(good, ts=now + 60_001), "future", ack_status="STALE")
    add("future_far", fr(good, ts=0xFFFFFFFFFFFFFFFF), "future", ack_status="STALE")
    # CBOR: authentic, ACK INVALID
    add(
        "cbor_truncated_map",
        fr(head(5, 2) + enc_text("p") + enc_int(1)),
        "cbor_malformed",
        ack_status="INVALID",
    )
    add("cbor_trailing_bytes", fr(good + b"\x00"), "cbor_malformed", ack_status="INVALID")
    add(
        "cbor_reserved_additional_info",
        fr(head(5, 1) + enc_text("p") + b"\x1c"),
        "cbor_malformed",
        ack_status="INVALID",
    )
    add(
        "cbor_invalid_utf8",
        fr(head(5, 1) + b"\x62\xff\xfe" + enc_int(1)),
        "cbor_malformed",
        ack_status="INVALID",
    )
    add("cbor_empty_payload", fr(b""), "cbor_malformed", ack_status="INVALID")
    add("cbor_break_outside_indefinite", fr(b"\xff"), "cbor_malformed", ack_status="INVALID")
    add(
        "cbor_tag",
        fr(head(5, 1) + enc_text("t") + b"\xc1" + enc_int(1_700_000_000)),
        "cbor_limits",
        ack_status="INVALID",
    )
    add(
        "cbor_bignum_tag",
        fr(head(5, 1) + enc_text("n") + b"\xc2\x41\x01"),
        "cbor_limits",
        ack_status="INVALID",
    )
    add(
        "cbor_indefinite_map",
        fr(b"\xbf" + enc_text("p") + enc_int(1) + b"\xff"),
        "cbor_limits",
        ack_status="INVALID",
    )
    add(
        "cbor_indefinite_text",
        fr(head(5, 1) + enc_text("s") + b"\x7f" + enc_text("ab") + b"\xff"),
        "cbor_limits",
        ack_status="INVALID",
    )
    deep = head(5, 1) + enc_text("a") + head(4, 1) + head(4, 1) + head(4, 1) + head(4, 1) + enc_int(1)
    add("cbor_depth_5", fr(deep, ftype=0x02), "cbor_limits", ack_status="INVALID")
    add(
        "cbor_text_257_bytes",
        fr(head(5, 1) + enc_text("s") + enc_text("x" * 257)),
        "cbor_limits",
        ack_status="INVALID",
    )
    add(
        "cbor_bytes_257_bytes",
        fr(head(5, 1) + enc_text("b") + head(2, 257) + bytes(257), ftype=0x02),
        "cbor_limits",
        ack_status="INVALID",
    )
    add(
        "cbor_array_65_items",
        fr(head(5, 1) + enc_text("a") + head(4, 65) + bytes(65), ftype=0x02),
        "cbor_limits",
        ack_status="INVALID",
    )
    many = head(5, 21) + b"".join(enc_text(f"k{i}") + enc_int(i) for i in range(21))
    add("cbor_map_21_keys", fr(many), "cbor_limits", ack_status="INVALID")
    add(
        "cbor_duplicate_keys",
        fr(head(5, 2) + enc_text("p") + enc_int(1) + enc_text("p") + enc_int(2)),
        "cbor_limits",
        ack_status="INVALID",
    )
    add(
        "cbor_simple_value_undefined",
        fr(head(5, 1) + enc_text("u") + b"\xf7"),
        "cbor_limits",
        ack_status="INVALID",
    )
    # schema: authentic, well-formed, ACK INVALID
    add("schema_telemetry_not_a_map", fr(head(4, 1) + enc_int(1)), "schema", ack_status="INVALID")
    add("schema_telemetry_int_key", fr(head(5, 1) + enc_int(1) + enc_int(2)), "schema", ack_status="INVALID")
    add(
        "schema_telemetry_nested_map",
        fr(head(5, 1) + enc_text("m") + head(5, 0)),
        "schema",
        ack_status="INVALID",
    )
    add(
        "schema_telemetry_null_value",
        fr(head(5, 1) + enc_text("n") + b"\xf6"),
        "schema",
        ack_status="INVALID",
    )
    add("schema_event_not_a_map", fr(enc_text("door_open"), ftype=0x02), "schema", ack_status="INVALID")
    add(
        "schema_command_bytes_key",
        fr(head(5, 1) + head(2, 1) + b"\x00" + enc_int(1), ftype=0x04),
        "schema",
        ack_status="INVALID",
    )
    return out


def render() -> str:
    return json.dumps(build(), indent=1) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    text = render()
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is out of date: run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
