"""Typed readers of TOML values, shared by `config` (core sections) and `delivery_config`.

Each reader takes the table, the dotted key of that table and the name inside it, and either
returns a value of the right type or raises a `ConfigError` that names the full key and the
expected form: one wording per kind of value, whichever section it sits in.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .keys import MIN_MASTER_SECRET_BYTES, secret_weakness

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_MAX_SIZE = 1 << 60


def read_table(raw: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, f"must be a table, got {type(raw).__name__}", f"a [{key}] table")
    return raw


def reject_unknown(t: Mapping[str, Any], key: str, allowed: Collection[str]) -> None:
    """A typo must fail loudly instead of falling back to a default. `key` "" is the top level."""
    for name in t:
        if name not in allowed:
            prefix = f"{key}." if key else ""
            raise ConfigError(f"{prefix}{name}", "unknown key", "one of " + ", ".join(sorted(allowed)))


def read_int(t: Mapping[str, Any], key: str, name: str, default: int, lo: int, hi: int) -> int:
    value = t.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{key}.{name}", f"bad value {value!r}", f"an integer from {lo} to {hi}")
    return value


def read_float(t: Mapping[str, Any], key: str, name: str, default: float, lo: float, hi: float) -> float:
    value = t.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConfigError(f"{key}.{name}", f"bad value {value!r}", f"a number from {lo:g} to {hi:g}")
    return float(value)


def read_bool(t: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
    value = t.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}.{name}", f"bad value {value!r}", "true or false")
    return value


def read_choice(t: Mapping[str, Any], key: str, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = t.get(name, default)
    if value not in choices:
        raise ConfigError(f"{key}.{name}", f"bad value {value!r}", " | ".join(f'"{c}"' for c in choices))
    return str(value)


def read_str(t: Mapping[str, Any], key: str, name: str, default: str | None) -> str:
    """A non-empty string; `default` None makes the key required."""
    value = t.get(name, default)
    if value is None:
        raise ConfigError(f"{key}.{name}", "missing", "a string")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}.{name}", f"bad value {value!r}", "a non-empty string")
    return value


def read_host(t: Mapping[str, Any], key: str, name: str, default: str) -> str:
    value = t.get(name, default)
    if not isinstance(value, str) or not value or not value.isascii():
        raise ConfigError(
            f"{key}.{name}", f"bad value {value!r}", 'an IP address or host name, e.g. "0.0.0.0"'
        )
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not all(part.isalnum() or "-" in part for part in value.split(".")):
            raise ConfigError(f"{key}.{name}", f"bad value {value!r}", "an IP address or host name") from None
    return value


def read_networks(t: Mapping[str, Any], key: str, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = t.get(name, list(default))
    expected = 'a list of networks, e.g. ["127.0.0.0/8", "10.10.0.0/24"]'
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}.{name}", f"bad value {value!r}", expected)
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{key}.{name}", f"bad network {item!r}", expected) from None
    return tuple(value)


def read_http_url(t: Mapping[str, Any], key: str, name: str) -> str:
    """A required http(s) URL with a host, in ASCII and without white space (it goes on the wire)."""
    url = read_str(t, key, name, None)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. "http://[::1": an unclosed IPv6 bracket
        raise ConfigError(f"{key}.{name}", f"bad URL {url!r} ({exc})", "http://host:port/path") from None
    if not url.isascii() or any(c in url for c in "\r\n\t "):
        raise ConfigError(
            f"{key}.{name}", f"bad URL {url!r}", "http://host:port/path in ASCII, without spaces"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}.{name}", f"bad URL {url!r}", "http://host:port/path")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{key}.{name}", f"bad port in {url!r}", "http://host:port/path") from exc
    return url


def parse_size(value: Any, key: str) -> int:
    """Bytes as an integer or a string like "512MiB", "1GiB", "10 GB"."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_SIZE:
        return value
    if isinstance(value, str) and len(value) <= 64:
        match = _SIZE_RE.match(value)
        if match:
            unit = (match.group(2) or "B").lower()
            size = float(match.group(1)) * _SIZE_UNITS[unit]
            if 1 <= size <= _MAX_SIZE:
                return int(size)
    raise ConfigError(
        key, f"bad size {value!r}", 'a positive integer of bytes (at most 2^60) or a string like "1GiB"'
    )


def parse_model_id(text: str, key: str, example: str = '[models."0x10"]') -> int:
    """A model id 0..255 written as a number ("0x10", "16"); `example` shows where it goes."""
    try:
        model = int(text, 0)
    except ValueError:
        model = -1
    if not 0 <= model <= 0xFF:
        raise ConfigError(
            key, f"bad model id {text!r}", f'a quoted model id from "0x00" to "0xff" (0..255), e.g. {example}'
        )
    return model


def parse_secret_hex(value: Any, key: str) -> bytes:
    """A master or pair secret: hex of at least MIN_MASTER_SECRET_BYTES bytes that look random."""
    expected = (
        f"at least {MIN_MASTER_SECRET_BYTES} random bytes as hex (at least {2 * MIN_MASTER_SECRET_BYTES} "
        "hex digits; `nanogridata-gateway keygen` makes one)"
    )
    if not isinstance(value, str):
        raise ConfigError(key, "missing or not a string", expected)
    try:
        secret = bytes.fromhex(value.strip())
    except ValueError:
        raise ConfigError(key, "not hexadecimal", expected) from None
    weakness = secret_weakness(secret)
    if weakness is not None:
        raise ConfigError(key, weakness, expected)
    return secret
