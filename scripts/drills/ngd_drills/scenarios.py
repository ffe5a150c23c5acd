"""The drill scenarios: one fault each, how it is injected and healed, and what must happen."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .env import DrillError, Executor

# A table of our own in each gateway's nftables ruleset: dropping it heals the partition
# without touching the firewall role's rules.
PARTITION_TABLE = "ngd_drill_partition"
# The HA issue's target: the VIP is on the backup within this many seconds of the master stopping.
TARGET_VIP_MOVE_S = 1.0
# Devices served again (lost connection -> first ACK) where the pair masks a fault without moving
# the VIP: a dead gateway (nginx sends to the peer's) or a crashed nginx (systemd restarts it).
TARGET_RECONNECT_P99_MS = 1000.0
# nginx stopped for good on the master: keepalived's chk_nginx (interval 1 s x fall 2: whole
# seconds only in keepalived 2.2.7) plus the VRRP transition.
TARGET_NGINX_DOWN_VIP_MOVE_S = 3.0
# How long systemd may take to bring a crashed nginx back before the drill calls it a failure.
NGINX_RESTART_LIMIT_S = 10.0


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


# A crash, not an operator's stop: SIGKILL of the master process only (as the OOM killer or a
# segfault would), so systemd sees the unit's main process die and applies Restart=. Its workers
# are left holding the listen socket, as after a real crash; `systemctl stop` would be an
# operator's decision that Restart= rightly ignores (scenario nginx-stop).
NGINX_CRASH = (
    'pid=$(systemctl show --property=MainPID --value nginx); [ "${pid:-0}" -gt 0 ] && kill -KILL "$pid"'
)


def _nginx_crash(executor: Executor, roles: Roles) -> None:
    _run(executor, roles.master, NGINX_CRASH)


def _nginx_restarted(executor: Executor, roles: Roles) -> None:
    """Nothing to undo when systemd did its job: nginx must be active again by itself. If it is
    not, start it (never leave the fault behind) and fail the drill."""
    deadline = time.monotonic() + NGINX_RESTART_LIMIT_S
    while True:
        if executor.run(roles.master, "systemctl is-active --quiet nginx", 10).rc == 0:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    executor.run(roles.master, "systemctl start nginx", 60)
    raise DrillError(
        f"nginx on {roles.master} was not running {NGINX_RESTART_LIMIT_S:g}s after the crash: "
        "systemd did not restart it (the nginx_stream role's drop-in "
        "/etc/systemd/system/nginx.service.d/10-restart.conf sets Restart=); started it by hand"
    )


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
    # When set: device reconnect p99 (lost connection -> first ACK) must be within this (a target).
    reconnect_p99_ms: float | None = None


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
            "nginx's master process on the master crashes (SIGKILL): systemd restarts it, the VIP stays",
            _nginx_crash,
            _nginx_restarted,
            vip_moves=False,
            reconnect_p99_ms=TARGET_RECONNECT_P99_MS,
        ),
        Scenario(
            "nginx-stop",
            "nginx on the master is stopped (systemctl stop) and kept down until healed",
            _service("stop", "nginx", "master"),
            _service("start", "nginx", "master"),
            vip_moves=True,
            vip_target_s=TARGET_NGINX_DOWN_VIP_MOVE_S,
        ),
        Scenario(
            "gateway-kill",
            "the gateway on the master is killed (SIGKILL); nginx must mask it via the peer",
            lambda ex, r: _run(
                ex,
                r.master,
                "systemctl kill -s KILL nanogridata-gateway; sleep 0.2; systemctl stop nanogridata-gateway",
            ),
            _service("start", "nanogridata-gateway", "master"),
            vip_moves=False,
            hold_s=6.0,
            reconnect_p99_ms=TARGET_RECONNECT_P99_MS,
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
