"""Sans-IO stream splitter: bytes as they arrive from a TCP stream -> complete frames.

Handles many frames per read and frames split across reads. A frame whose header declares a
payload above the limit is skipped without being buffered ("payload_too_large"); a bad magic
ends the stream ("bad_magic"): without it there is no way to find the next frame boundary.
"""

from __future__ import annotations

from .protocol import FLAG_LONG_TAG, HEADER_LEN, LONG_TAG, MAGIC, MAX_PAYLOAD, SHORT_TAG

BAD_MAGIC = "bad_magic"
PAYLOAD_TOO_LARGE = "payload_too_large"


class FrameStream:
    """Feed bytes, get back complete frames (bytes) and rejection reasons (str), in order."""

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

    def feed(self, data: bytes) -> list[bytes | str]:
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
        out: list[bytes | str] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_LEN:
            if buf[pos] != MAGIC[0] or buf[pos + 1] != MAGIC[1]:
                out.append(BAD_MAGIC)
                self.closed = True
                self._buf = b""
                return out
            n = (buf[pos + 6] << 8) | buf[pos + 7]
            size = HEADER_LEN + n + (LONG_TAG if buf[pos + 5] & FLAG_LONG_TAG else SHORT_TAG)
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
