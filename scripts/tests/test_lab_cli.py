"""scripts/lab.sh command line: errors name the bad input and the fix, before touching Docker."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAB_SH = REPO / "scripts" / "lab.sh"


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    # DOCKER points nowhere: none of these may need an engine.
    env = {**os.environ, "DOCKER": "/nonexistent/docker", "NO_COLOR": "1"}
    env.pop("NGD_LAB", None)
    env.pop("NGD_LAB_SUBNET", None)
    return subprocess.run(
        [str(LAB_SH), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_help_lists_every_command() -> None:
    result = lab("--help")
    assert result.returncode == 0
    for command in (
        "up",
        "down",
        "status",
        "shell HOST",
        "ip HOST",
        "image",
        "secret NAME",
        "inventory",
    ):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--lab", "Bad_Name"], "--lab 'Bad_Name': use 1-20 lowercase"),
        (["up", "--subnet", "10.0.0.0/16"], "--subnet '10.0.0.0/16': give a /24"),
        (["up", "--hosts", "gw-a,gw-z"], "--hosts: unknown host 'gw-z'"),
        (["up", "--frob"], "unknown option: --frob"),
        (["reboot"], "unknown command 'reboot'"),
    ],
)
def test_bad_input_is_refused_with_the_reason(args: list[str], message: str) -> None:
    result = lab(*args)
    assert result.returncode != 0
    assert message in result.stderr


def test_inventory_is_made_from_hosts_tsv_on_the_given_subnet_without_docker() -> None:
    result = lab("inventory", "--lab", "x1", "--subnet", "10.9.8.0/24")
    assert result.returncode == 0, result.stderr
    inventory = yaml.safe_load(result.stdout)["all"]
    assert inventory["vars"]["ngd_vip"] == "10.9.8.100"
    assert inventory["vars"]["ngd_lab_subnet"] == "10.9.8.0/24"
    hosts = {
        name: (group, host)
        for group, node in inventory["children"].items()
        for name, host in (node["hosts"] or {}).items()
    }
    rows = [
        line.split()
        for line in (REPO / "scripts" / "lab" / "hosts.tsv").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(hosts) == sorted(row[0] for row in rows)
    for name, octet, group, extra in rows:
        assert hosts[name][0] == group
        assert hosts[name][1]["ngd_private_ip"] == f"10.9.8.{octet}"
        assert hosts[name][1]["ansible_host"] == f"ngd-x1-{name}"
        for key, _, value in (kv.partition("=") for kv in extra.split(",") if extra != "-"):
            assert str(hosts[name][1][key]) == value


def test_no_command_prints_usage() -> None:
    result = lab()
    assert result.returncode == 2
    assert "Usage:" in result.stderr


@pytest.fixture
def throwaway_lab() -> Iterator[str]:
    name = f"unit-{uuid.uuid4().hex[:8]}"
    yield name
    shutil.rmtree(REPO / ".lab" / name, ignore_errors=True)


def test_secrets_are_random_stable_and_private(throwaway_lab: str) -> None:
    first = lab("secret", "--lab", throwaway_lab, "grafana_admin_password")
    assert first.returncode == 0, first.stderr
    again = lab("secret", "--lab", throwaway_lab, "grafana_admin_password")
    other = lab("secret", "--lab", throwaway_lab, "peer_token")
    assert len(first.stdout) >= 32
    assert first.stdout == again.stdout
    assert other.stdout != first.stdout
    path = REPO / ".lab" / throwaway_lab / "secrets" / "grafana_admin_password"
    assert path.stat().st_mode & 0o077 == 0


def test_secret_name_is_validated(throwaway_lab: str) -> None:
    result = lab("secret", "--lab", throwaway_lab, "../escape")
    assert result.returncode != 0
    assert "secret name '../escape'" in result.stderr
