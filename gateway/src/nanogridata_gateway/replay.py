"""Per-device 64-slot sliding replay window (IPsec style, RFC 4303 §3.4.3), persisted.

State: for each (model, device) the highest accepted sequence `top` and a 64-bit bitmap of
`top-63 .. top`. Marks are appended to a journal of fixed 9-byte records (os.write: survives a
killed process; fsync'd by `sync()`); at start the journal and the snapshot are loaded, then
compacted into a new snapshot. Implements `records.ReplayGuard`.

A disk error (full disk, file size limit, I/O error, a short write) never raises out of `mark`,
`flush`, `fsync` or `close`: the in-memory windows stay authoritative, `writable` turns False,
pending journal records are dropped (memory stays bounded), and `repair()` later writes every
window into a new snapshot, which also discards a torn journal tail. The caller (the ingest
server) reports `writable` on /ready and retries `repair()`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import struct
from pathlib import Path
from typing import Final

WINDOW: Final = 64
_MASK: Final = (1 << WINDOW) - 1
_JOURNAL_REC: Final = struct.Struct(">BII")  # model, device, seq
_SNAPSHOT_REC: Final = struct.Struct(">BIIQ")  # model, device, top, bitmap
_SNAPSHOT_MAGIC: Final = b"NGDRPL1\n"

log = logging.getLogger("nanogridata.replay")
_DISK_FULL: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class ReplayWindows:
    """In-memory windows; `seen` and `mark` are O(1)."""

    def __init__(self) -> None:
        # key = model << 32 | device -> [top, bitmap]
        self._windows: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self._windows)

    def seen(self, model_id: int, device_id: int, seq: int) -> bool:
        window = self._windows.get((model_id << 32) | device_id)
        if window is None:
            return False
        top = window[0]
        if seq > top:
            return False
        diff = top - seq
        if diff >= WINDOW:
            return True  # too old to tell: treated as already seen
        return bool((window[1] >> diff) & 1)

    def top(self, model_id: int, device_id: int) -> int | None:
        """The highest accepted sequence of the device, None when it has no window yet."""
        window = self._windows.get((model_id << 32) | device_id)
        return None if window is None else window[0]

    def mark(self, model_id: int, device_id: int, seq: int) -> None:
        key = (model_id << 32) | device_id
        window = self._windows.get(key)
        if window is None:
            self._windows[key] = [seq, 1]
            return
        top = window[0]
        if seq > top:
            shift = seq - top
            window[1] = ((window[1] << shift) | 1) & _MASK if shift < WINDOW else 1
            window[0] = seq
        elif top - seq < WINDOW:
            window[1] |= 1 << (top - seq)

    def items(self) -> list[tuple[int, int, int, int]]:
        return [(k >> 32, k & 0xFFFFFFFF, w[0], w[1]) for k, w in self._windows.items()]

    def load(self, model_id: int, device_id: int, top: int, bitmap: int) -> None:
        self._windows[(model_id << 32) | device_id] = [top, bitmap & _MASK]


class PersistentReplayGuard(ReplayWindows):
    """ReplayWindows backed by `<state_dir>/replay.snapshot` + `<state_dir>/replay.journal`."""

    def __init__(self, state_dir: str | os.PathLike[str], compact_bytes: int = 64 << 20) -> None:
        super().__init__()
        self._dir = Path(state_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._snapshot = self._dir / "replay.snapshot"
        self._journal_path = self._dir / "replay.journal"
        self._compact_bytes = compact_bytes
        self._pending = bytearray()
        self._journal_size = 0
        self._unsynced = False
        self._syncing = False
        self.writable = True  # False from a failed write/fsync until repair() succeeded
        self.write_errors = 0
        self._load()
        self._fd = -1
        try:
            self._compact()
            self._fd = self._open_journal()
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise  # permissions, a missing mount...: a deployment error, refuse to start
            # A full disk at start: the state is loaded, the files on disk are still consistent;
            # start not ready and let repair() write the snapshot once there is room.
            self._failed("snapshot at start", exc)

    def _load(self) -> None:
        if self._snapshot.exists():
            data = self._snapshot.read_bytes()
            if not data.startswith(_SNAPSHOT_MAGIC):
                raise ValueError(f"{self._snapshot}: not a replay snapshot")
            body = memoryview(data)[len(_SNAPSHOT_MAGIC) :]
            usable = len(body) - len(body) % _SNAPSHOT_REC.size
            for model, dev, top, bitmap in _SNAPSHOT_REC.iter_unpack(body[:usable]):
                self.load(model, dev, top, bitmap)
        if self._journal_path.exists():
            data = self._journal_path.read_bytes()
            usable = len(data) - len(data) % _JOURNAL_REC.size  # a torn last record is ignored
            for model, dev, seq in _JOURNAL_REC.iter_unpack(data[:usable]):
                super().mark(model, dev, seq)

    def _compact(self) -> None:
        """Write all windows to a new snapshot (atomic rename), then empty the journal."""
        tmp = self._snapshot.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(_SNAPSHOT_MAGIC)
            fh.write(b"".join(_SNAPSHOT_REC.pack(*item) for item in self.items()))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._snapshot)
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        with open(self._journal_path, "wb") as fh:
            os.fsync(fh.fileno())

    def _open_journal(self) -> int:
        return os.open(self._journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _failed(self, what: str, exc: OSError) -> None:
        """A write or fsync failed: the journal no longer holds every mark."""
        self.write_errors += 1
        self._pending.clear()  # the windows hold these marks; repair() writes them all
        if self.writable:
            self.writable = False
            log.error(
                "replay journal %s failed: %s; marks are kept in memory, /ready is 503 until a new"
                " snapshot is written",
                what,
                exc,
                extra={"path": str(self._journal_path)},
            )

    def mark(self, model_id: int, device_id: int, seq: int) -> None:
        super().mark(model_id, device_id, seq)
        if not self.writable:
            return  # repair() snapshots the windows, this mark included
        self._pending += _JOURNAL_REC.pack(model_id, device_id, seq)
        if len(self._pending) >= 64 * 1024:
            self.flush()

    def flush(self) -> None:
        """Hand pending marks to the kernel (survives a killed process, not a power loss)."""
        if not self._pending or not self.writable:
            return
        try:
            written = os.write(self._fd, self._pending)
        except OSError as exc:
            self._failed("write", exc)
            return
        if written != len(self._pending):  # disk full mid-record: the journal tail is torn
            self._failed("write", OSError(f"short write ({written} of {len(self._pending)} bytes)"))
            return
        self._unsynced = True
        self._journal_size += written
        self._pending.clear()
        if self._journal_size >= self._compact_bytes and not self._syncing:
            self._rewrite()

    def _rewrite(self) -> bool:
        """Snapshot every window, empty the journal, reopen it; False (and not writable) on error."""
        with contextlib.suppress(OSError):  # the descriptor is gone either way
            os.close(self._fd)
        self._fd = -1
        try:
            self._compact()
            self._fd = self._open_journal()
        except OSError as exc:
            self._failed("snapshot", exc)
            return False
        self._journal_size = 0
        self._unsynced = False
        self._pending.clear()  # every pending mark is in the new snapshot
        return True

    def repair(self) -> bool:
        """After a failure: write every window into a new snapshot. True when writable again."""
        if self.writable:
            return True
        if self._syncing:
            return False  # an fsync is running on the descriptor in another thread
        if self._rewrite():
            self.writable = True
            log.warning(
                "replay journal writable again: every window is in a new snapshot",
                extra={"path": str(self._snapshot), "devices": len(self)},
            )
            return True
        return False

    def sync(self) -> None:
        """flush() and fsync: survives a power loss."""
        self.flush()
        self.fsync()

    def fsync(self) -> None:
        """fsync what flush() wrote. Safe to run in a worker thread while the event loop keeps
        calling mark()/flush() (the journal is not compacted meanwhile)."""
        if self._unsynced and self.writable:
            self._syncing = True
            self._unsynced = False
            try:
                os.fsync(self._fd)
            except OSError as exc:
                # After a failed fsync the kernel may have dropped the dirty pages: only a new
                # snapshot makes these marks durable again.
                self._failed("fsync", exc)
            finally:
                self._syncing = False

    def close(self) -> None:
        """sync(), or one last repair(); logs (does not raise) when marks stay unpersisted."""
        self.sync()
        if not self.repair():
            log.error(
                "replay state not persisted at shutdown: frames stored since the journal failed"
                " can be stored a second time if they are replayed after the restart",
                extra={"path": str(self._journal_path)},
            )
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
