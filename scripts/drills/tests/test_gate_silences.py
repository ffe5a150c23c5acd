"""The drill's gate (ngd_drills.observe.active_alerts, asked before a drill starts and polled
during it) against a real Alertmanager on loopback: an alert an operator has silenced, with a
comment saying why, no longer blocks a drill; an unsilenced one still does; the always-firing
Watchdog never does. The rehearsal relies on this for the twin's ClockNotSynchronised."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "scripts" / "drills"))
sys.path.insert(0, str(REPO / "prometheus" / "tools"))

from loopback_daemon import alertmanager_argv, amtool, loopback_daemon  # noqa: E402
from ngd_drills.env import Result  # noqa: E402
from ngd_drills.observe import active_alerts  # noqa: E402

CONFIG = """
route:
  receiver: "null"
receivers:
  - name: "null"
"""


class LocalExecutor:
    """Runs the gate's command here, as the monitoring host would (its Alertmanager on loopback)."""

    def run(self, host: str, command: str, timeout: float = 30.0) -> Result:
        proc = subprocess.run(
            command, shell=True, capture_output=True, text=True, timeout=timeout, check=False
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


def gate(port: int) -> list[str] | None:
    alerts = active_alerts(LocalExecutor(), "mon", port)  # type: ignore[arg-type]
    return None if alerts is None else sorted(str(a["labels"]["alertname"]) for a in alerts)


def test_a_silenced_alert_does_not_block_the_drill(tmp_path: Path) -> None:
    for tool in ("prometheus-alertmanager", "amtool"):
        assert shutil.which(tool), (
            f"{tool} missing: scripts/ci/unit-drills.sh installs Debian's prometheus-alertmanager"
        )
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG)

    with loopback_daemon("alertmanager", alertmanager_argv("prometheus-alertmanager", config)) as am:
        am.wait_ready(timeout=60)
        for name, severity in (
            ("Watchdog", "info"),
            ("ClockNotSynchronised", "warning"),
            ("GatewayDown", "warning"),
        ):
            amtool(am.url, "alert", "add", f"alertname={name}", f"severity={severity}", "instance=gw-a")
        deadline = time.monotonic() + 60
        while gate(am.port) != ["ClockNotSynchronised", "GatewayDown"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert gate(am.port) == ["ClockNotSynchronised", "GatewayDown"]

        amtool(am.url, "silence", "add", "alertname=ClockNotSynchronised", "--duration=1h",
               "--author=test", "--comment=known false alarm")  # fmt: skip
        deadline = time.monotonic() + 60
        while gate(am.port) != ["GatewayDown"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert gate(am.port) == ["GatewayDown"]  # still blocks: nobody silenced it

    assert gate(am.port) is None  # Alertmanager gone: the gate cannot tell, the drill must not start
