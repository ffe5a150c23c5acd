"""Sans-IO PROXY protocol v1/v2 header parser (HAProxy spec; nginx `proxy_protocol on`).

nginx stream sends the header first on every upstream connection, so the gateway can log and
rate-limit by the real device address instead of nginx's.
"""

from __future__ import annotations

import ipaddress
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107
V2_MAX = 16 + 0xFFFF  # the 16-byte preamble and the largest length its 16-bit field can declare


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY header of an allowed version."""


def parse_proxy_header(
    data: bytes, mode: str = "any", max_len: int = V2_MAX
) -> tuple[int, tuple[str, int] | None] | None:
    """Parse a header at the start of `data`.

    Returns None when more bytes are needed, else (bytes consumed, (source ip, source port) or None
    for LOCAL/UNKNOWN connections such as health checks). `mode` is "v1", "v2" or "any".

    A v2 header longer than `max_len` bytes is refused as soon as its length field is read, so the
    verdict does not depend on how the header was split across reads, and the caller never holds
    more than `max_len` bytes of it (v1 lines are at most 107 bytes).
    """
    if data[:1] == b"\r" and mode in ("v2", "any"):
        return _parse_v2(data, max_len)
    if data[:1] == b"P" and mode in ("v1", "any"):
        return _parse_v1(data)
    if not data:
        return None
    raise ProxyHeaderError(f"no PROXY protocol {mode} header")


def _parse_v1(data: bytes) -> tuple[int, tuple[str, int] | None] | None:
    if len(data) < len(V1_PREFIX):
        if V1_PREFIX.startswith(data):
            return None
        raise ProxyHeaderError("bad PROXY v1 prefix")
    if not data.startswith(V1_PREFIX):
        raise ProxyHeaderError("bad PROXY v1 prefix")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError("PROXY v1 line longer than 107 bytes")
        return None
    parts = data[:end].decode("ascii", "replace").split(" ")
    consumed = end + 2
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return consumed, None
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("bad PROXY v1 line")
    try:
        src = ipaddress.ip_address(parts[2])
        ipaddress.ip_address(parts[3])
        sport, dport = int(parts[4]), int(parts[5])
    except ValueError as exc:
        raise ProxyHeaderError(f"bad PROXY v1 address: {exc}") from None
    if (src.version == 4) != (parts[1] == "TCP4") or not (0 <= sport <= 65535 and 0 <= dport <= 65535):
        raise ProxyHeaderError("bad PROXY v1 address family or port")
    return consumed, (str(src), sport)


def _parse_v2(data: bytes, max_len: int) -> tuple[int, tuple[str, int] | None] | None:
    if len(data) < 16:
        if V2_SIGNATURE.startswith(data[:12]):
            return None
        raise ProxyHeaderError("bad PROXY v2 signature")
    if data[:12] != V2_SIGNATURE:
        raise ProxyHeaderError("bad PROXY v2 signature")
    ver_cmd, family, length = struct.unpack_from(">BBH", data, 12)
    if ver_cmd >> 4 != 2:
        raise ProxyHeaderError("bad PROXY v2 version")
    if 16 + length > max_len:
        raise ProxyHeaderError(f"PROXY v2 header of {16 + length} bytes, over the limit of {max_len}")
    if len(data) < 16 + length:
        return None
    consumed = 16 + length
    command = ver_cmd & 0x0F
    if command == 0:  # LOCAL: the proxy's own connection (health check)
        return consumed, None
    if command != 1:
        raise ProxyHeaderError("bad PROXY v2 command")
    body = data[16:consumed]
    if family == 0x11:  # TCP over IPv4
        if length < 12:
            raise ProxyHeaderError("short PROXY v2 IPv4 address block")
        return consumed, (str(ipaddress.IPv4Address(body[0:4])), struct.unpack_from(">H", body, 8)[0])
    if family == 0x21:  # TCP over IPv6
        if length < 36:
            raise ProxyHeaderError("short PROXY v2 IPv6 address block")
        return consumed, (str(ipaddress.IPv6Address(body[0:16])), struct.unpack_from(">H", body, 32)[0])
    if family == 0x00:  # UNSPEC
        return consumed, None
    raise ProxyHeaderError(f"unsupported PROXY v2 address family {family:#x}")
