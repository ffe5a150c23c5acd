"""Sans-IO bounds of one device connection: its deadlines, and connections per source address.

The server reports what happened with the time it happened (bytes read and whether they left a
frame or PROXY header unfinished, reading paused by the server's own back-pressure, the write
buffer over or back under its high mark); `ConnectionDeadlines.expired(now, ...)` names the
deadline that has passed, if any. Time is a parameter, so every rule is testable without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

IDLE_TIMEOUT = "idle_timeout"
FRAME_TIMEOUT = "frame_timeout"
WRITE_STALL = "write_stall"
CLOSE_REASONS = (IDLE_TIMEOUT, FRAME_TIMEOUT, WRITE_STALL)


@dataclass(frozen=True, slots=True)
class Timeouts:
    idle_s: float  # nothing read for this long
    frame_s: float  # a started frame (or the PROXY header) still unfinished after this long
    write_stall_s: float  # the write buffer above its high mark (the device reads no ACKs) this long


class ConnectionDeadlines:
    """The deadlines of one connection.

    The frame deadline runs from the first byte of the frame that is still unfinished (a slow
    sender cannot keep it alive byte by byte, as it can the idle deadline). It does not run while
    the server itself holds the connection's reading (store back-pressure, drain): the device
    cannot finish a frame that nobody reads. While the device leaves its ACKs unread, only the
    write-stall deadline runs (reading is paused then, so nothing else can make progress).
    """

    __slots__ = ("held", "last_activity", "partial_since", "stalled_since")

    def __init__(self, now: float, *, partial: bool = False) -> None:
        self.last_activity = now
        self.partial_since: float | None = now if partial else None  # e.g. a PROXY header is due
        self.stalled_since: float | None = None
        self.held = False

    def read(self, now: float, *, completed: bool, partial: bool) -> None:
        """Bytes arrived; `completed`: they finished at least one frame (or the PROXY header),
        `partial`: an unfinished one is left, so it started in these bytes if `completed`."""
        self.last_activity = now
        if not partial:
            self.partial_since = None
        elif completed or self.partial_since is None:
            self.partial_since = now

    def hold(self) -> None:
        """The server stopped reading for its own reasons."""
        self.held = True

    def release(self, now: float) -> None:
        """The server reads again: an unfinished frame gets a whole new deadline."""
        self.held = False
        self.last_activity = now
        if self.partial_since is not None:
            self.partial_since = now

    def write_blocked(self, now: float) -> None:
        if self.stalled_since is None:
            self.stalled_since = now

    def write_unblocked(self, now: float) -> None:
        if self.stalled_since is not None:
            self.stalled_since = None
            if not self.held:  # reading resumes: fresh deadlines, as after any pause
                self.release(now)

    def expired(self, now: float, timeouts: Timeouts, *, awaiting_store: bool) -> str | None:
        """The reason to close now, or None. `awaiting_store`: frames of this connection are
        still on their way to the store (the device is waiting for us, not idle)."""
        if self.stalled_since is not None:
            return WRITE_STALL if now - self.stalled_since >= timeouts.write_stall_s else None
        if self.held:
            return None
        if self.partial_since is not None and now - self.partial_since >= timeouts.frame_s:
            return FRAME_TIMEOUT
        if not awaiting_store and now - self.last_activity >= timeouts.idle_s:
            return IDLE_TIMEOUT
        return None


class SourceCounts:
    """Open connections per source address, with a ceiling (0: no ceiling)."""

    __slots__ = ("_counts", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def add(self, source: str) -> bool:
        """Count one more connection from `source`; False (and not counted) when at the limit."""
        count = self._counts.get(source, 0)
        if self.limit and count >= self.limit:
            return False
        self._counts[source] = count + 1
        return True

    def remove(self, source: str) -> None:
        count = self._counts.get(source, 0)
        if count <= 1:
            self._counts.pop(source, None)
        else:
            self._counts[source] = count - 1

    def __getitem__(self, source: str) -> int:
        return self._counts.get(source, 0)

    def __len__(self) -> int:
        return len(self._counts)
