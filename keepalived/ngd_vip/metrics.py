"""node-exporter textfile metrics of docs/metrics.md (keepalived section), written atomically.

One file per VRRP instance, ``keepalived_<instance>.prom``. The counters live in the file itself
("since the file was created"), so each write reads the previous file first. Writers serialise on
an flock (``.keepalived_notify.lock`` in the same directory); the file is replaced by writing a
temp file in the same directory (not ending in .prom, so node-exporter never reads it half
written), fsync, then rename.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# keepalived state name -> keepalived_vrrp_state value (docs/metrics.md: 0 init, 1 backup, 2 master, 3 fault)
STATE_VALUES = {"STOP": 0, "INIT": 0, "BACKUP": 1, "MASTER": 2, "MASTER_RX_LOWER_PRI": 2, "FAULT": 3}

_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class InstanceMetrics:
    instance: str
    state: int = 0
    change_timestamp: float = 0.0
    transitions: int = 0
    provider_errors: dict[str, int] = field(default_factory=dict)


Order = tuple[str, int, int]


def notify_order(pid: int | None = None) -> Order:
    """(boot id, start time in clock ticks since boot, pid) of a process: the order keepalived
    forked its notify processes in, whatever order they then reach the lock (/proc/PID/stat
    field 22). Tick counts restart at boot, hence the boot id."""
    pid = os.getpid() if pid is None else pid
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return boot_id, int(fields[19]), pid


def metrics_path(directory: Path, instance: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", instance)
    return directory / f"keepalived_{safe}.prom"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse(text: str, instance: str) -> InstanceMetrics:
    """Read back a file this module wrote. Unknown lines are ignored."""
    result = InstanceMetrics(instance)
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = {k: _unescape(v) for k, v in _LABEL.findall(match["labels"])}
        if labels.get("instance") != instance:
            continue
        value = float(match["value"])
        name = match["name"]
        if name == "keepalived_vrrp_state":
            result.state = int(value)
        elif name == "keepalived_vrrp_state_change_timestamp_seconds":
            result.change_timestamp = value
        elif name == "keepalived_vrrp_transitions_total":
            result.transitions = int(value)
        elif name == "keepalived_vip_provider_errors_total" and "provider" in labels:
            result.provider_errors[labels["provider"]] = int(value)
    return result


def render(m: InstanceMetrics) -> str:
    inst = f'instance="{_escape(m.instance)}"'
    lines = [
        "# HELP keepalived_vrrp_state VRRP state reported by the notify script:"
        " 0 init, 1 backup, 2 master, 3 fault.",
        "# TYPE keepalived_vrrp_state gauge",
        f"keepalived_vrrp_state{{{inst}}} {m.state}",
        "# HELP keepalived_vrrp_state_change_timestamp_seconds Time of the last VRRP state transition.",
        "# TYPE keepalived_vrrp_state_change_timestamp_seconds gauge",
        f"keepalived_vrrp_state_change_timestamp_seconds{{{inst}}} {m.change_timestamp:.3f}",
        "# HELP keepalived_vrrp_transitions_total VRRP state transitions since this file was created.",
        "# TYPE keepalived_vrrp_transitions_total counter",
        f"keepalived_vrrp_transitions_total{{{inst}}} {m.transitions}",
        "# HELP keepalived_vip_provider_errors_total Failed cloud IP moves by the provider hook.",
        "# TYPE keepalived_vip_provider_errors_total counter",
    ]
    for provider in sorted(m.provider_errors):
        labels = f'{inst},provider="{_escape(provider)}"'
        lines.append(f"keepalived_vip_provider_errors_total{{{labels}}} {m.provider_errors[provider]}")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # node-exporter runs as its own user and must read it
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".keepalived_notify.lock", "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class MetricsFile:
    def __init__(self, directory: Path, instance: str, provider: str) -> None:
        self.directory = directory
        self.instance = instance
        self.provider = provider
        self.path = metrics_path(directory, instance)

    def _read(self) -> InstanceMetrics | None:
        try:
            return parse(self.path.read_text(encoding="utf-8"), self.instance)
        except FileNotFoundError:
            return None

    def current(self) -> InstanceMetrics:
        with locked(self.directory):
            found = self._read()
        return found if found is not None else InstanceMetrics(self.instance)

    def record_state(
        self, state_name: str, order: Order | None = None, now: float | None = None
    ) -> tuple[InstanceMetrics, bool, bool]:
        """Write the new state. Returns (metrics, whether it was a transition, whether stale).

        Same state again: identical content (no transition counted, timestamp kept), but the
        file is rewritten so node_textfile_mtime_seconds shows the script is alive.

        keepalived forks one notify per transition and does not wait, so two can race (BACKUP
        then MASTER within milliseconds). ``order`` (when this notify process was forked, see
        :func:`notify_order`) settles it: a notification forked before the last one recorded is
        stale and changes nothing."""
        now = time.time() if now is None else now
        value = STATE_VALUES[state_name]
        with locked(self.directory):
            if order is not None:
                order_file = self.directory / f".{self.path.name}.order"
                try:
                    boot_id, ticks, pid = order_file.read_text().split()
                    last: Order | None = (boot_id, int(ticks), int(pid))
                except (FileNotFoundError, ValueError):
                    last = None
                if last is not None and last[0] == order[0] and order[1:] < last[1:]:
                    return self._read() or InstanceMetrics(self.instance), False, True
                write_atomic(order_file, " ".join(map(str, order)) + "\n")
            previous = self._read()
            m = previous if previous is not None else InstanceMetrics(self.instance, change_timestamp=now)
            m.provider_errors.setdefault(self.provider, 0)
            changed = m.state != value
            if changed:
                m.state = value
                m.transitions += 1
                m.change_timestamp = now
            write_atomic(self.path, render(m))
        return m, changed, False

    def refresh(self) -> InstanceMetrics:
        """Rewrite unchanged (reconcile does this so the file's mtime shows the checks run)."""
        with locked(self.directory):
            m = self._read() or InstanceMetrics(self.instance, change_timestamp=time.time())
            m.provider_errors.setdefault(self.provider, 0)
            write_atomic(self.path, render(m))
        return m

    def count_provider_error(self) -> InstanceMetrics:
        with locked(self.directory):
            m = self._read() or InstanceMetrics(self.instance, change_timestamp=time.time())
            m.provider_errors[self.provider] = m.provider_errors.get(self.provider, 0) + 1
            write_atomic(self.path, render(m))
        return m
