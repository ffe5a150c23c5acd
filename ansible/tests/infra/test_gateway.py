"""gateway role: release layout, config and secrets, hardened unit, readiness."""

from __future__ import annotations

import json
from typing import Any

import pytest
import testinfra.host

from conftest import wait_for

pytestmark = pytest.mark.gateway

BASE = "/opt/nanogridata/gateway"
UNIT = "nanogridata-gateway"
MAX_EXPOSURE = 2.0


def test_service_runs_unprivileged(host: testinfra.host.Host) -> None:
    service = host.service(UNIT)
    assert service.is_enabled and service.is_running
    user = host.check_output(f"systemctl show -p User --value {UNIT}")
    assert user == "nanogridata"
    main_pid = host.check_output(f"systemctl show -p MainPID --value {UNIT}")
    status = host.file(f"/proc/{main_pid}/status").content_string
    cap_eff = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:"))
    assert int(cap_eff, 16) == 0, "the gateway must run without any capability"


def test_release_layout(host: testinfra.host.Host) -> None:
    current = host.file(f"{BASE}/current")
    assert current.is_symlink
    target = current.linked_to
    assert target.startswith(f"{BASE}/releases/")
    assert host.file(f"{target}/venv/.complete").exists
    version = host.check_output(f"{BASE}/current/venv/bin/nanogridata-gateway --version")
    assert version.split()[-1] in target


def test_config_and_secrets_modes(host: testinfra.host.Host) -> None:
    config = host.file("/etc/nanogridata/gateway.toml")
    assert (config.user, config.group, config.mode) == ("root", "nanogridata", 0o640)
    secrets = host.file("/etc/nanogridata/secrets.toml")
    assert (secrets.user, secrets.mode) == ("nanogridata", 0o600)
    assert "master_secret" not in config.content_string


def test_installed_config_passes_check_config(host: testinfra.host.Host) -> None:
    out = host.check_output(
        f"{BASE}/current/venv/bin/nanogridata-gateway check-config --config /etc/nanogridata/gateway.toml"
    )
    summary = json.loads(out)
    assert summary["ok"] is True
    assert summary["proxy_protocol"] in ("v1", "any")


def test_unit_hardening_exposure(host: testinfra.host.Host) -> None:
    out = host.check_output(f"systemd-analyze security --no-pager {UNIT}.service | tail -n 1")
    # "→ Overall exposure level for nanogridata-gateway.service: 1.2 OK 🙂"
    exposure = float(out.split(":", 1)[1].split()[0])
    assert exposure <= MAX_EXPOSURE, out


def test_ready_and_ports(host: testinfra.host.Host, hostvars: dict[str, Any]) -> None:
    metrics_port = hostvars["ngd_gateway_metrics_port"]
    wait_for(
        lambda: host.run(f"curl -fsS -o /dev/null http://127.0.0.1:{metrics_port}/ready").rc == 0,
        "/ready 200",
        timeout=30,
    )
    data = host.socket(f"tcp://{hostvars['ngd_private_ip']}:{hostvars['ngd_gateway_data_port']}")
    assert data.is_listening
    assert "nanogridata_ready 1" in host.check_output(f"curl -fsS http://127.0.0.1:{metrics_port}/metrics")
