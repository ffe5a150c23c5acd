"""Per-device 64-slot sliding replay window (IPsec style, RFC 4303 §3.4.3), persisted.

State: for each (model, device) the highest accepted sequence `top` and a 64-bit bitmap of
`top-63 .. top`. Marks are appended to a journal of fixed 9-byte records (os.write: survives a
killed process; fsync'd by `sync()`); at start the journal and the snapshot are loaded, then
compacted into a new snapshot. Implements `records.ReplayGuard`.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Final

WINDOW: Final = 64
_MASK: Final = (1 << WINDOW) - 1
_JOURNAL_REC: Final = struct.Struct(">BII")  # model, device, seq
_SNAPSHOT_REC: Final = struct.Struct(">BIIQ")  # model, device, top, bitmap
_SNAPSHOT_MAGIC: Final = b"NGDRPL1\n"


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
        self._load()
        self._compact()
        self._fd = os.open(self._journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._journal_size = 0
        self._unsynced = False
        self._syncing = False

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

    def mark(self, model_id: int, device_id: int, seq: int) -> None:
        super().mark(model_id, device_id, seq)
        self._pending += _JOURNAL_REC.pack(model_id, device_id, seq)
        if len(self._pending) >= 64 * 1024:
            self.flush()

    def flush(self) -> None:
        """Hand pending marks to the kernel (survives a killed process, not a power loss)."""
        if self._pending:
            os.write(self._fd, self._pending)
            self._unsynced = True
            self._journal_size += len(self._pending)
            self._pending.clear()
            if self._journal_size >= self._compact_bytes and not self._syncing:
                os.close(self._fd)
                self._compact()
                self._fd = os.open(self._journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                self._journal_size = 0

    def sync(self) -> None:
        """flush() and fsync: survives a power loss."""
        self.flush()
        self.fsync()

    def fsync(self) -> None:
        """fsync what flush() wrote. Safe to run in a worker thread while the event loop keeps
        calling mark()/flush() (the journal is not compacted meanwhile)."""
        if self._unsynced:
            self._syncing = True
            self._unsynced = False
            try:
                os.fsync(self._fd)
            finally:
                self._syncing = False

    def close(self) -> None:
        self.sync()
        os.close(self._fd)
