"""common role: base packages, kernel settings, journald limits, clock."""

from __future__ import annotations

from typing import Any

import pytest
import testinfra.host

pytestmark = pytest.mark.common


def in_container(host: testinfra.host.Host) -> bool:
    return bool(host.run("systemd-detect-virt --container --quiet").rc == 0)


@pytest.mark.parametrize("package", ["ca-certificates", "curl", "iproute2", "python3-apt", "sudo"])
def test_base_package(host: testinfra.host.Host, package: str) -> None:
    assert host.package(package).is_installed


def test_sysctl_file_lists_every_setting(host: testinfra.host.Host) -> None:
    conf = host.file("/etc/sysctl.d/60-nanogridata.conf")
    assert conf.mode == 0o644
    for key in ("net.ipv4.ip_nonlocal_bind", "net.ipv4.tcp_keepalive_time", "net.core.somaxconn"):
        assert conf.contains(f"^{key} = ")


def test_sysctl_values_applied(host: testinfra.host.Host) -> None:
    if in_container(host):
        pytest.skip("containers cannot write /proc/sys; the runtime sets these")
    assert host.sysctl("net.ipv4.ip_nonlocal_bind") == 1
    assert host.sysctl("net.ipv4.tcp_keepalive_time") == 60


def test_journald_limits_active(host: testinfra.host.Host) -> None:
    assert host.file("/etc/systemd/journald.conf.d/60-nanogridata.conf").contains("^SystemMaxUse=")
    assert host.service("systemd-journald").is_running


def test_admin_sudo_rule_is_valid(host: testinfra.host.Host) -> None:
    rule = host.file("/etc/sudoers.d/60-nanogridata-admins")
    assert rule.mode == 0o440
    assert host.run("visudo -cf /etc/sudoers.d/60-nanogridata-admins").rc == 0


def test_clock_synchronised(host: testinfra.host.Host, hostvars: dict[str, Any]) -> None:
    if not hostvars.get("common_chrony_enabled", True):
        pytest.skip("chrony disabled here (lab containers share the host's clock)")
    assert host.service("chrony").is_running
    tracking = host.check_output("chronyc -n tracking")
    assert "Leap status     : Normal" in tracking, tracking
