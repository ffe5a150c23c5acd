"""checkov policies for Hetzner Cloud resources (CKV_NGD_*).

checkov ships no hcloud checks, so without these the scan would pass vacuously. Values checkov
cannot resolve statically (e.g. a variable without default) are left to the module's validation
blocks and `tofu test`; these checks fail on what is visible in the code.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

WORLD = {"0.0.0.0/0", "::/0"}


def _first(conf: dict[str, Any], key: str) -> Any:
    value = conf.get(key)
    return value[0] if isinstance(value, list) and value else value


def _strings(value: Any) -> set[str]:
    """checkov nests list values in lists (and sometimes lists of lists): flatten them."""
    if isinstance(value, list):
        return set().union(*(_strings(item) for item in value)) if value else set()
    return {str(value)}


def _port_range(port: Any) -> tuple[int, int] | None:
    """'22' -> (22, 22), '20-25' -> (20, 25), 'any' -> everything; None when not static."""
    text = str(port).strip()
    if text == "any":
        return (1, 65535)
    low, _, high = text.partition("-")
    if low.isdigit() and (not high or high.isdigit()):
        return (int(low), int(high or low))
    return None


class HcloudFirewallSshNotOpenToWorld(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure no hcloud firewall rule opens SSH (tcp/22) to 0.0.0.0/0 or ::/0",
            id="CKV_NGD_1",
            categories=[CheckCategories.NETWORKING],
            supported_resources=["hcloud_firewall"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        for rule in conf.get("rule", []):
            if not isinstance(rule, dict) or _first(rule, "protocol") != "tcp":
                continue
            ports = _port_range(_first(rule, "port"))
            if ports and ports[0] <= 22 <= ports[1] and WORLD & _strings(rule.get("source_ips", [])):
                return CheckResult.FAILED
        return CheckResult.PASSED


class HcloudServerBehindFirewall(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure every hcloud server is attached to a cloud firewall",
            id="CKV_NGD_2",
            categories=[CheckCategories.NETWORKING],
            supported_resources=["hcloud_server"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        return CheckResult.PASSED if _first(conf, "firewall_ids") else CheckResult.FAILED


class HcloudServerUsesSshKeys(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure hcloud servers get SSH keys (else Hetzner mails a root password)",
            id="CKV_NGD_3",
            categories=[CheckCategories.IAM],
            supported_resources=["hcloud_server"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        return CheckResult.PASSED if _first(conf, "ssh_keys") else CheckResult.FAILED


check_ssh = HcloudFirewallSshNotOpenToWorld()
check_firewall = HcloudServerBehindFirewall()
check_keys = HcloudServerUsesSshKeys()
