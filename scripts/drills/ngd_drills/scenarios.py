"""The drill scenarios: one fault each, how it is injected and healed, and what must happen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .env import DrillError, Executor

# A table of our own in each gateway's nftables ruleset: dropping it heals the partition
# without touching the firewall role's rules.
PARTITION_TABLE = "ngd_drill_partition"
# The HA issue's target: the VIP is on the backup within this many seconds of the master stopping.
TARGET_VIP_MOVE_S = 1.0


@dataclass(frozen=True)
class Roles:
    master: str
    backup: str


Action = Callable[[Executor, Roles], None]


def _run(executor: Executor, host: str, command: str) -> None:
    result = executor.run(host, command, timeout=60)
    if result.rc != 0:
        raise DrillError(f"on {host}: '{command}' failed ({result.rc}): {result.stderr.strip()}")


def _service(action: str, unit: str, on: str) -> Action:
    def act(executor: Executor, roles: Roles) -> None:
        host = roles.master if on == "master" else roles.backup
        _run(executor, host, f"systemctl {action} {unit}")

    return act


def _partition(executor: Executor, roles: Roles) -> None:
    for host, peer in ((roles.master, roles.backup), (roles.backup, roles.master)):
        peer_ip = executor_var(executor, peer)
        _run(
            executor,
            host,
            f"nft add table inet {PARTITION_TABLE} && "
            f"nft add chain inet {PARTITION_TABLE} input "
            "'{ type filter hook input priority -200; policy accept; }' && "
            f"nft add rule inet {PARTITION_TABLE} input ip saddr {peer_ip} ip protocol vrrp drop",
        )


def _heal_partition(executor: Executor, roles: Roles) -> None:
    for host in (roles.master, roles.backup):
        _run(executor, host, f"nft delete table inet {PARTITION_TABLE} 2>/dev/null || true")


def executor_var(executor: Executor, host: str) -> str:
    inventory = getattr(executor, "inventory", None)
    if inventory is None:
        raise DrillError("the executor has no inventory")
    return str(inventory.var(host, "ngd_private_ip"))


def _host_stop(on: str) -> Action:
    def act(executor: Executor, roles: Roles) -> None:
        executor.host_stop(roles.master if on == "master" else roles.backup)

    return act


def _host_start(on: str) -> Action:
    def act(executor: Executor, roles: Roles) -> None:
        executor.host_start(roles.master if on == "master" else roles.backup)

    return act


def _master_reboot(executor: Executor, roles: Roles) -> None:
    executor.host_restart(roles.master)


def _nothing(executor: Executor, roles: Roles) -> None:
    return None


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    inject: Action
    heal: Action
    vip_moves: bool  # the VIP is expected on the backup after the fault
    # When set: the VIP must be on the backup within this many seconds of the fault (a target).
    vip_target_s: float | None = None
    needs_host_power: bool = False
    hold_s: float = 4.0  # how long the fault stays when nothing is awaited
    split_brain: bool = False


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "master-stop",
            "the master host stops (docker stop: services shut down, host gone)",
            _host_stop("master"),
            _host_start("master"),
            vip_moves=True,
            vip_target_s=TARGET_VIP_MOVE_S,
            needs_host_power=True,
        ),
        Scenario(
            "master-reboot",
            "the master host reboots and comes back by itself",
            _master_reboot,
            _nothing,
            vip_moves=True,
        ),
        Scenario(
            "keepalived-stop",
            "keepalived stops on the master",
            _service("stop", "keepalived", "master"),
            _service("start", "keepalived", "master"),
            vip_moves=True,
        ),
        Scenario(
            "nginx-kill",
            "nginx on the master is killed (SIGKILL) and kept down until healed",
            lambda ex, r: _run(
                ex, r.master, "systemctl kill -s KILL nginx; sleep 0.2; systemctl stop nginx"
            ),
            _service("start", "nginx", "master"),
            vip_moves=True,
        ),
        Scenario(
            "gateway-kill",
            "the gateway on the master is killed (SIGKILL); nginx must mask it via the peer",
            lambda ex, r: _run(
                ex,
                r.master,
                "systemctl kill -s KILL nanogridata-gateway; sleep 0.2; "
                "systemctl stop nanogridata-gateway",
            ),
            _service("start", "nanogridata-gateway", "master"),
            vip_moves=False,
            hold_s=6.0,
        ),
        Scenario(
            "partition",
            "VRRP between the gateways is dropped both ways (nftables): split brain",
            _partition,
            _heal_partition,
            vip_moves=False,
            split_brain=True,
        ),
        Scenario(
            "backup-stop",
            "the backup host stops: traffic must not notice",
            _host_stop("backup"),
            _host_start("backup"),
            vip_moves=False,
            needs_host_power=True,
            hold_s=6.0,
        ),
    )
}
