"""The environment a drill runs against: hosts and variables from the Ansible inventory (the same
file every operator script uses), ports from ansible/group_vars/all/ports.yml, and an executor
that runs commands on those hosts: `docker exec` in the lab, pyinfra's SSH connector elsewhere."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]


class DrillError(Exception):
    """A drill cannot run or cannot continue; the message names the cause and the fix."""


@dataclass
class Inventory:
    env: str
    hostvars: dict[str, dict[str, Any]]
    groups: dict[str, list[str]]
    ports: dict[str, int]

    @property
    def gateways(self) -> list[str]:
        return self.groups.get("gateways", [])

    def var(self, host: str, name: str) -> Any:
        try:
            return self.hostvars[host][name]
        except KeyError:
            raise DrillError(
                f"inventory {self.env}: host {host} has no variable '{name}' "
                f"(see docs inventory contract; lab: re-run scripts/lab.sh up)"
            ) from None

    def first(self, group: str) -> str:
        hosts = self.groups.get(group, [])
        if not hosts:
            raise DrillError(
                f"inventory {self.env}: group '{group}' has no host{REQUIRED_GROUPS.get(group, '')}"
            )
        return hosts[0]

    def require_groups(self) -> None:
        """Every group a drill reads from has a host (else a DrillError naming it and the fix)."""
        for group in REQUIRED_GROUPS:
            self.first(group)


# What each group is for in a drill, and how an environment gets one.
REQUIRED_GROUPS = {
    "monitoring": (
        ": the drill reads Alertmanager on the monitoring host (monitoring_enabled = true in the "
        "environment's tfvars, then scripts/deploy.sh ENV)"
    ),
    "collectors": (
        ": the drill counts every acknowledged frame at the sink (VictoriaMetrics on a "
        "collector host); set collector_enabled = true in the environment's tfvars and run "
        "scripts/deploy.sh ENV"
    ),
}


def inventory_path(env: str) -> Path:
    """ansible/inventories/ENV/hosts.yml; for a lab other than "lab" (NGD_LAB, as for lab.sh and
    deploy.sh) the inventory deploy.sh keeps under .lab/NAME/inventory/."""
    lab = os.environ.get("NGD_LAB", "lab") or "lab"
    if env == "lab" and lab != "lab":
        return REPO_ROOT / ".lab" / lab / "inventory" / "hosts.yml"
    return REPO_ROOT / "ansible" / "inventories" / env / "hosts.yml"


def load_inventory(env: str) -> Inventory:
    path = inventory_path(env)
    if not path.is_file():
        hint = "run scripts/lab.sh up (or scripts/deploy.sh lab)" if env == "lab" else "create it"
        raise DrillError(f"no inventory {path}: {hint}")
    out = subprocess.run(
        ["ansible-inventory", "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if out.returncode != 0:
        raise DrillError(f"ansible-inventory failed on {path}: {out.stderr.strip()[-400:]}")
    data = json.loads(out.stdout)
    groups = {
        name: list(value.get("hosts", []))
        for name, value in data.items()
        if isinstance(value, dict) and name != "_meta"
    }
    ports_file = REPO_ROOT / "ansible" / "group_vars" / "all" / "ports.yml"
    ports = yaml.safe_load(ports_file.read_text(encoding="utf-8"))
    inv = Inventory(env=env, hostvars=data["_meta"]["hostvars"], groups=groups, ports=ports)
    if len(inv.gateways) != 2:
        raise DrillError(f"inventory {env}: group 'gateways' must hold exactly two hosts, has {inv.gateways}")
    return inv


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str = ""


class Executor(Protocol):
    """Runs commands on inventory hosts and, where it can, stops/starts whole hosts."""

    supports_host_power: bool

    def run(self, host: str, command: str, timeout: float = 30.0) -> Result: ...

    def stream(self, host: str, command: str) -> subprocess.Popen[str] | None: ...

    def host_stop(self, host: str) -> None: ...

    def host_start(self, host: str) -> None: ...

    def host_restart(self, host: str) -> None: ...

    def host_running(self, host: str) -> bool: ...

    def close(self) -> None: ...


@dataclass
class DockerExecutor:
    """The lab: every host is a systemd container named by its inventory ansible_host."""

    inventory: Inventory
    docker: str = "docker"
    supports_host_power: bool = True

    def container(self, host: str) -> str:
        return str(self.inventory.var(host, "ansible_host"))

    def run(self, host: str, command: str, timeout: float = 30.0) -> Result:
        try:
            out = subprocess.run(
                [self.docker, "exec", self.container(host), "sh", "-c", command],
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return Result(124, "", f"timed out after {timeout}s: {command}")
        return Result(out.returncode, out.stdout, out.stderr)

    def stream(self, host: str, command: str) -> subprocess.Popen[str] | None:
        return subprocess.Popen(
            [self.docker, "exec", self.container(host), "sh", "-c", command],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )

    def _docker(self, *args: str, timeout: float = 60.0) -> None:
        out = subprocess.run(
            [self.docker, *args], capture_output=True, text=True, check=False, timeout=timeout
        )
        if out.returncode != 0:
            raise DrillError(f"docker {' '.join(args)} failed: {out.stderr.strip()}")

    def host_stop(self, host: str) -> None:
        # -t 5: systemd gets SIGRTMIN+3 (the image's stop signal) and shuts services down cleanly.
        self._docker("stop", "-t", "5", self.container(host))

    def host_start(self, host: str) -> None:
        self._docker("start", self.container(host))

    def host_restart(self, host: str) -> None:
        self._docker("restart", "-t", "5", self.container(host))

    def host_running(self, host: str) -> bool:
        out = subprocess.run(
            [self.docker, "inspect", "-f", "{{.State.Running}}", self.container(host)],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return out.stdout.strip() == "true"

    def close(self) -> None:
        return None


def known_hosts_files(ssh_common_args: str) -> list[Path]:
    """The files of -o UserKnownHostsFile=... in ansible_ssh_common_args (the inventory bridge
    names known_hosts, with OpenTofu's host keys, and known_hosts.tofu)."""
    words = shlex.split(ssh_common_args or "")
    for i, word in enumerate(words):
        option = words[i + 1] if word == "-o" and i + 1 < len(words) else word.removeprefix("-o")
        if option.lower().startswith("userknownhostsfile="):
            return [Path(p) for p in option.split("=", 1)[1].split()]
    return []


def pyinfra_host_data(name: str, hv: dict[str, Any]) -> dict[str, Any]:
    """pyinfra's connection data for an inventory host. The host keys are those Ansible checks:
    the inventory's known_hosts files (pyinfra reads one: they are joined into one beside them),
    strictly; without such files pyinfra's own default applies."""
    data: dict[str, Any] = {"ssh_hostname": hv.get("ansible_host", name)}
    if "ansible_user" in hv:
        data["ssh_user"] = hv["ansible_user"]
    if "ansible_port" in hv:
        data["ssh_port"] = int(hv["ansible_port"])
    files = known_hosts_files(str(hv.get("ansible_ssh_common_args", "")))
    if files:
        joined = files[0].parent / ".known_hosts.drill"
        joined.write_text("".join(f.read_text() for f in files if f.is_file()))
        data["ssh_known_hosts_file"] = str(joined)
        data["ssh_strict_host_key_checking"] = "yes"
    return data


@dataclass
class PyinfraExecutor:
    """Staging/production: pyinfra's SSH connector over the same inventory (ansible_host,
    ansible_user, ansible_port). Whole-host power cycling needs the cloud API: not offered."""

    inventory: Inventory
    supports_host_power: bool = False
    _state: Any = field(default=None, init=False)

    def _connect(self) -> Any:
        if self._state is None:
            # pyinfra is needed on staging/production only: a lab drill runs without it
            from pyinfra.api.config import Config  # noqa: PLC0415
            from pyinfra.api.connect import connect_all  # noqa: PLC0415
            from pyinfra.api.inventory import Inventory as PyInventory  # noqa: PLC0415
            from pyinfra.api.state import State  # noqa: PLC0415

            names = []
            for name, hv in self.inventory.hostvars.items():
                names.append((name, pyinfra_host_data(name, hv)))
            self._state = State(PyInventory((names, {})), Config(SUDO=True))  # type: ignore[no-untyped-call]
            connect_all(self._state)
        return self._state

    def run(self, host: str, command: str, timeout: float = 30.0) -> Result:
        state = self._connect()
        target = state.inventory.get_host(host)
        if target is None or not target.connected:
            return Result(255, "", f"pyinfra: {host} is not connected")
        ok, output = target.run_shell_command(
            f"timeout {int(timeout)} sh -c {shlex.quote(command)}", _sudo=True
        )
        return Result(0 if ok else 1, output.stdout, output.stderr)

    def stream(self, host: str, command: str) -> subprocess.Popen[str] | None:
        return None  # the VIP watcher polls instead

    def host_stop(self, host: str) -> None:
        raise DrillError("stopping a whole host needs the cloud API: run this scenario in the lab")

    host_start = host_stop

    def host_restart(self, host: str) -> None:
        result = self.run(host, "systemctl reboot", timeout=15)
        if result.rc not in (0, 1, 255):  # the connection may drop while the host goes down
            raise DrillError(f"reboot of {host} failed: {result.stderr}")

    def host_running(self, host: str) -> bool:
        return self.run(host, "true", timeout=10).rc == 0

    def close(self) -> None:
        if self._state is not None:
            from pyinfra.api.connect import disconnect_all  # noqa: PLC0415 - see _connect

            disconnect_all(self._state)


def make_executor(inventory: Inventory) -> Executor:
    conn = {hv.get("ansible_connection") for hv in inventory.hostvars.values()}
    if conn == {"community.docker.docker"}:
        return DockerExecutor(inventory)
    return PyinfraExecutor(inventory)


def sh_quote(*parts: str) -> str:
    return " ".join(shlex.quote(p) for p in parts)
