"""Production pages someone: site.yml's preflight (the alertmanager role's check.yml) refuses a
production inventory without a pager, a dead man's switch, a warning receiver or runbook links,
naming the vault variable to set. Runs the check against localhost (asserts only, nothing is
changed), with the production group_vars as committed and a stand-in for the vault."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = """
- name: Preflight as site.yml runs it
  hosts: monitoring
  gather_facts: false
  tasks:
    - name: Check the Alertmanager receivers
      ansible.builtin.include_role:
        name: alertmanager
        tasks_from: check.yml
"""
FILLED = {
    "vault_alert_pager_webhook_url": "https://pager.example.net/hook/1",
    "vault_alert_deadman_url": "https://hc-ping.example.net/abc",
    "vault_alert_chat_webhook_url": "https://chat.example.net/hook/2",
}


def _check(
    tmp_path: Path, environment: str, vault: dict[str, str], **extra: str
) -> subprocess.CompletedProcess[str]:
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "group_vars" / "all").symlink_to(
        REPO / "ansible" / "inventories" / environment / "group_vars" / "all"
    )
    hosts = {
        "all": {
            "vars": {"ngd_env": environment},
            "children": {"monitoring": {"hosts": {"mon": {"ansible_connection": "local"}}}},
        }
    }
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (tmp_path / "vault.yml").write_text(yaml.safe_dump(vault))
    (tmp_path / "check.yml").write_text(PLAYBOOK)
    extra_args = [a for k, v in extra.items() for a in ("-e", f"{k}={v}")]
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO / "ansible" / "roles"),
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(inventory / "hosts.yml"),
            "-e",
            f"@{tmp_path / 'vault.yml'}",
            *extra_args,
            str(tmp_path / "check.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        (
            "vault_alert_pager_webhook_url",
            "set vault_alert_pagerduty_routing_key (PagerDuty Events v2) or vault_alert_pager_webhook_url",
        ),
        ("vault_alert_deadman_url", "production needs a dead man's switch"),
        (
            "vault_alert_chat_webhook_url",
            "production needs a receiver for warnings: set vault_alert_chat_webhook_url",
        ),
    ],
)
def test_production_without_a_receiver_is_refused(tmp_path: Path, missing: str, named: str) -> None:
    vault = {k: v for k, v in FILLED.items() if k != missing}
    result = _check(
        tmp_path, "production", vault, ngd_runbook_base_url="https://git.example.net/docs/alerts.md"
    )
    assert result.returncode != 0
    assert named in result.stdout
    for secret in vault.values():
        assert secret not in result.stdout + result.stderr


def test_production_without_runbook_links_is_refused(tmp_path: Path) -> None:
    result = _check(tmp_path, "production", FILLED)
    assert result.returncode != 0
    assert "ngd_runbook_base_url is empty" in result.stdout
    assert "ansible/inventories/production/group_vars/all/main.yml" in result.stdout


def test_production_with_every_receiver_passes(tmp_path: Path) -> None:
    result = _check(
        tmp_path, "production", FILLED, ngd_runbook_base_url="https://git.example.net/docs/alerts.md"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_staging_needs_no_pager(tmp_path: Path) -> None:
    result = _check(tmp_path, "staging", {})
    assert result.returncode == 0, result.stdout + result.stderr
