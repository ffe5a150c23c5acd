"""Sans-IO stream splitter: bytes as they arrive from a TCP stream -> complete frames.

Handles many frames per read and frames split across reads. A frame whose header declares a
payload above the limit is skipped without being buffered ("payload_too_large"); a bad magic
ends the stream ("bad_magic"): without it there is no way to find the next frame boundary.
"""

from __future__ import annotations

from .protocol import (
    FLAG_LONG_TAG,
    HEADER_LEN,
    LONG_TAG,
    MAGIC,
    MAX_PAYLOAD,
    SHORT_TAG,
    Reject,
    unpack_prefix,
)

BAD_MAGIC = Reject.BAD_MAGIC
PAYLOAD_TOO_LARGE = Reject.PAYLOAD_TOO_LARGE


class FrameStream:
    """Feed bytes, get back complete frames (bytes) and rejection reasons (Reject), in order."""

    __slots__ = ("_buf", "_skip", "closed")

    def __init__(self) -> None:
        self._buf = b""
        self._skip = 0  # bytes still to discard of an oversized frame
        self.closed = False

    @property
    def buffered(self) -> int:
        """Bytes held: the start of the one frame not yet complete (at most MAX_FRAME - 1)."""
        return len(self._buf)

    @property
    def in_frame(self) -> bool:
        """A frame has started and not ended (held, or an oversized one still being skipped)."""
        return bool(self._buf) or self._skip > 0

    def feed(self, data: bytes) -> list[bytes | Reject]:
        """Frames completed by `data`; after a BAD_MAGIC item the stream accepts nothing more."""
        if self.closed:
            return []
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = data[self._skip :]
            self._skip = 0
        buf = self._buf + data if self._buf else data
        out: list[bytes | Reject] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_LEN:
            magic, flags, n = unpack_prefix(buf, pos)
            if magic != MAGIC:
                out.append(BAD_MAGIC)
                self.closed = True
                self._buf = b""
                return out
            size = HEADER_LEN + n + (LONG_TAG if flags & FLAG_LONG_TAG else SHORT_TAG)
            if n > MAX_PAYLOAD:
                out.append(PAYLOAD_TOO_LARGE)
                if pos + size > end:
                    self._skip = pos + size - end
                    self._buf = b""
                    return out
                pos += size
                continue
            if pos + size > end:
                break
            out.append(buf[pos : pos + size])
            pos += size
        self._buf = buf[pos:] if pos < end else b""
        return out
