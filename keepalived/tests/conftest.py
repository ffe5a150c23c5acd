"""Shared fixtures: the hcloud API twin, a config writer, a recording `ip` command, and a runner
that calls notify.py's main() the way keepalived calls the script."""

from __future__ import annotations

import json
import os
import secrets
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

KEEPALIVED_DIR = Path(__file__).resolve().parents[1]
# The Hetzner Cloud API twin lives in its own component (hcloud_twin/), beside this one.
TWIN_SRC = KEEPALIVED_DIR.parent / "hcloud_twin" / "src"
sys.path.insert(0, str(KEEPALIVED_DIR))
sys.path.insert(0, str(TWIN_SRC))

import notify  # noqa: E402
from hcloud_twin import HcloudTwin  # noqa: E402
from ngd_vip.metrics import parse  # noqa: E402

VIP = "198.51.100.7"
FIP_ID = 7
GW_A, GW_B = 42, 41  # server ids: this node is gw-a, the peer gw-b


@pytest.fixture()
def token() -> str:
    return secrets.token_hex(16)  # throw-away, never a real secret


@pytest.fixture()
def twin(token: str) -> Iterator[HcloudTwin]:
    with HcloudTwin(token) as server:
        server.add_server(GW_A, "gw-a")
        server.add_server(GW_B, "gw-b")
        server.add_floating_ip(FIP_ID, VIP, GW_B)  # the peer holds the IP at start
        server.set_action_seconds(0.2)
        yield server


@pytest.fixture()
def ip_recorder(tmp_path: Path) -> Path:
    """An `ip` stand-in: records each call and keeps the address set in a file, answering like
    iproute2 6.1 ("Error: ipv4: Address not found." when deleting an absent address)."""
    script = tmp_path / "fake-ip"
    script.write_text(
        "#!/bin/sh\n"
        'dir=$(dirname "$0")\n'
        'echo "$*" >> "$dir/ip-calls.log"\n'
        'touch "$dir/ip-addrs"\n'
        'if [ "$1" = -o ]; then\n'  # ip -o addr show dev IF
        '  grep " $5$" "$dir/ip-addrs" | while read -r addr dev; do\n'
        '    echo "2: $dev    inet $addr scope global $dev"\n'
        "  done\n"
        "  exit 0\n"
        "fi\n"
        'case "$2" in\n'
        '  replace) grep -qx "$3 $5" "$dir/ip-addrs" || echo "$3 $5" >> "$dir/ip-addrs" ;;\n'
        '  del) if grep -qx "$3 $5" "$dir/ip-addrs"; then'
        ' grep -vx "$3 $5" "$dir/ip-addrs" > "$dir/ip-addrs.new" || true;'
        ' mv "$dir/ip-addrs.new" "$dir/ip-addrs";'
        ' else echo "Error: ipv4: Address not found." >&2; exit 2; fi ;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    return script


def ip_addrs(ip_recorder: Path) -> list[str]:
    path = ip_recorder.parent / "ip-addrs"
    return path.read_text().split("\n")[:-1] if path.exists() else []


@dataclass
class Env:
    tmp: Path
    config: Path
    metrics_dir: Path
    token_file: Path

    def metrics_text(self, instance: str = "VI_1") -> str:
        return (self.metrics_dir / f"keepalived_{instance}.prom").read_text()

    def metrics(self, instance: str = "VI_1") -> Any:
        return parse(self.metrics_text(instance), instance)


@pytest.fixture()
def make_env(
    tmp_path: Path, token: str, ip_recorder: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Env]:
    monkeypatch.setenv("NGD_VIP_SYSLOG", "0")
    for var in ("NGD_VIP_CONFIG", "NGD_VIP_METRICS_DIR", "NGD_VIP_PROVIDER", "NGD_VIP_HCLOUD_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)

    def make(
        provider: str = "none",
        hcloud: dict[str, Any] | None = None,
        raw: str | None = None,
        token_text: str | None = None,
        token_mode: int = 0o600,
        **top: Any,
    ) -> Env:
        metrics_dir = tmp_path / "textfile"
        token_file = tmp_path / "hcloud-token"
        token_file.write_text((token if token_text is None else token_text) + "\n")
        token_file.chmod(token_mode)
        settings: dict[str, Any] = {"provider": provider, "metrics_dir": str(metrics_dir)}
        if provider != "none":
            settings.update(vip=VIP, vip_prefix=32, interface="eth0", ip_command=str(ip_recorder))
        settings.update(top)
        lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
        if hcloud is not None:
            table = {
                "token_file": str(token_file),
                "floating_ip_id": FIP_ID,
                "server_id": GW_A,
                "deadline_seconds": 10,
                "backoff_base_seconds": 0.05,
                "backoff_cap_seconds": 0.4,
                "poll_interval_seconds": 0.05,
                "request_timeout_seconds": 2,
            }
            table.update(hcloud)
            lines.append("[hcloud]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in table.items() if v is not None]
        config = tmp_path / "vip.toml"
        config.write_text(raw if raw is not None else "\n".join(lines) + "\n")
        monkeypatch.setenv("NGD_VIP_CONFIG", str(config))
        return Env(tmp_path, config, metrics_dir, token_file)

    return make


@dataclass
class Result:
    code: int
    seconds: float
    logs: list[dict[str, Any]]


@pytest.fixture()
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    def call(*argv: str) -> Result:
        start = time.monotonic()
        code = notify.main(list(argv))
        seconds = time.monotonic() - start
        err = capsys.readouterr().err
        logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        return Result(code, seconds, logs)

    return call


def file_mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)
