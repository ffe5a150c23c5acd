#!/usr/bin/env python3
"""Print one gateway node's release state as JSON (run on the node by scripts/ops/status.yml).

Releases live where the gateway role's deploy_helper puts them: <base>/releases/<name>, the
symlink <base>/current, and <base>/PREVIOUS_RELEASE written at each switch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path


def releases(base: Path) -> list[dict[str, object]]:
    found = []
    releases_dir = base / "releases"
    if releases_dir.is_dir():
        for path in releases_dir.iterdir():
            if not path.is_dir():
                continue
            installed = (path / "venv" / ".complete").exists()
            stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            found.append({"name": path.name, "installed": installed, "time": stamp})
    return sorted(found, key=lambda r: str(r["time"]))


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=3) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", default="/opt/nanogridata/gateway")
    ap.add_argument("--vip", required=True)
    ap.add_argument("--metrics-port", type=int, required=True)
    args = ap.parse_args()
    base = Path(args.base)
    current = base / "current"
    previous = base / "PREVIOUS_RELEASE"
    addresses = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False
    ).stdout
    print(
        json.dumps(
            {
                "current": os.path.basename(os.path.realpath(current)) if current.exists() else "",
                "previous": previous.read_text(encoding="utf-8").strip() if previous.exists() else "",
                "releases": releases(base),
                "vip": f" {args.vip}/" in addresses,
                "ready": ready(args.metrics_port),
            }
        )
    )


if __name__ == "__main__":
    main()
