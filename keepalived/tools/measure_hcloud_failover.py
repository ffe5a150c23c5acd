"""Measure how long notify.py MASTER takes to move a Hetzner floating IP, against the local twin.

Runs notify.py as keepalived does (a new process per notification, production default back-off
settings) for a few fault scenarios and prints a table plus one JSON line. The twin's action
duration stands in for Hetzner's (unknown here): pass --action-seconds to model it.

    python3 keepalived/tools/measure_hcloud_failover.py [--runs 5] [--action-seconds 1.0]
        [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEEPALIVED_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(KEEPALIVED_DIR))
sys.path.insert(0, str(KEEPALIVED_DIR.parent / "hcloud_twin" / "src"))  # the Hetzner Cloud API twin

from hcloud_twin import HcloudTwin  # noqa: E402

SCENARIOS: dict[str, list[tuple[str, int, int]]] = {
    "clean": [],
    "3x429 on assign": [("assign_floating_ip", 429, 3)],
    "2x503 on assign": [("assign_floating_ip", 503, 2)],
    "1x429 get + 1 dropped poll": [("get_floating_ip", 429, 1), ("get_action", 0, 1)],
}


def one_run(python: str, faults: list[tuple[str, int, int]], action_seconds: float, work: Path) -> float:
    token = secrets.token_hex(16)
    token_file = work / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    with HcloudTwin(token) as twin:
        twin.add_server(42, "gw-a")
        twin.add_server(41, "gw-b")
        twin.add_floating_ip(7, "198.51.100.7", 41)
        twin.set_action_seconds(action_seconds)
        for endpoint, status, times in faults:
            twin.inject(endpoint, status, times)
        config = work / "vip.toml"
        config.write_text(
            f'provider = "hcloud"\nmetrics_dir = "{work / "textfile"}"\nmanage_interface = false\n'
            f'[hcloud]\ntoken_file = "{token_file}"\nfloating_ip_id = 7\nserver_id = 42\n'
            f'endpoint = "{twin.endpoint}"\n'
        )
        env = dict(os.environ, NGD_VIP_SYSLOG="0")
        start = time.monotonic()
        done = subprocess.run(
            [
                python,
                str(KEEPALIVED_DIR / "notify.py"),
                "--config",
                str(config),
                "INSTANCE",
                "VI_1",
                "MASTER",
                "150",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        seconds = time.monotonic() - start
        if done.returncode != 0 or twin.assigned_server(7) != 42:
            raise SystemExit(f"run failed (rc {done.returncode}): {done.stderr}")
        (work / "textfile" / "keepalived_VI_1.prom").unlink()
        return seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--action-seconds", type=float, default=1.0)
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs notify.py")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, faults in SCENARIOS.items():
            times = [one_run(args.python, faults, args.action_seconds, Path(tmp)) for _ in range(args.runs)]
            results[name] = {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}
    print(
        f"notify.py MASTER -> floating IP assigned (twin action {args.action_seconds:g} s, {args.runs} runs,"
        f" {args.python})"
    )
    print(f"{'scenario':30} {'median s':>9} {'max s':>7}")
    for name, row in results.items():
        print(f"{name:30} {row['median_s']:>9.3f} {row['max_s']:>7.3f}")
    print(json.dumps({"action_seconds": args.action_seconds, "python": args.python, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
