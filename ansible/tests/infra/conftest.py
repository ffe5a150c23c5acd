"""Shared fixtures of the node tests (testinfra).

Run by every molecule scenario (molecule passes --ansible-inventory and --hosts) and against a real
environment after a deploy, for example:

    pytest ansible/tests/infra --hosts='ansible://gateways' \
        --ansible-inventory=ansible/inventories/production/hosts.yml -m 'not disruptive'

Tests are marked with the role they check (``-m nginx_stream``); tests that change a node's state
(failover) are also marked ``disruptive`` and must be deselected on production. --hosts takes
testinfra host specs: ``ansible://all`` or ``ansible://gateways`` (a bare group name is not one).
"""

from __future__ import annotations

import functools
import os
import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra
import testinfra.host
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

ROLES = (
    "common",
    "firewall",
    "nginx_stream",
    "keepalived",
    "gateway",
    "node_exporter",
    "victoriametrics",
    "prometheus",
    "alertmanager",
    "grafana",
    "backup",
    "ha_pair",
)


# Roles that run only on some node roles (inventory groups); the others run on every server.
ROLE_GROUPS = {
    "nginx_stream": "gateways",
    "keepalived": "gateways",
    "gateway": "gateways",
    "backup": "gateways",
    "victoriametrics": "collectors",
    "prometheus": "monitoring",
    "alertmanager": "monitoring",
    "grafana": "monitoring",
}


# The groups site.yml configures; a host in none of them (the lab's sim host) is not a server.
SERVER_GROUPS = ("gateways", "monitoring", "collectors")


def pytest_configure(config: pytest.Config) -> None:
    for role in ROLES:
        config.addinivalue_line("markers", f"{role}: checks of the {role} role")
    config.addinivalue_line("markers", "disruptive: changes a node's state (never on production)")


def inventory_path(config: pytest.Config) -> str:
    path = config.getoption("ansible_inventory") or os.environ.get("MOLECULE_INVENTORY_FILE")
    if not path:
        raise pytest.UsageError("pass --ansible-inventory=PATH (the environment's hosts.yml)")
    return str(path)


@functools.cache
def _runner(path: str) -> AnsibleRunner:
    return AnsibleRunner(path)


@pytest.fixture(scope="session")
def inventory(pytestconfig: pytest.Config) -> AnsibleRunner:
    return _runner(inventory_path(pytestconfig))


@pytest.fixture
def name(host: testinfra.host.Host) -> str:
    """Inventory name of the host under test (testinfra's host.backend.host)."""
    return str(host.backend.host)


PORTS_FILE = Path(__file__).resolve().parents[2] / "group_vars" / "all" / "ports.yml"


@functools.cache
def ports() -> dict[str, Any]:
    """ansible/group_vars/all/ports.yml: playbook-level group_vars, which an inventory alone
    (ansible-inventory, hence testinfra) does not load."""
    return dict(yaml.safe_load(PORTS_FILE.read_text(encoding="utf-8")))


@pytest.fixture
def hostvars(inventory: AnsibleRunner, name: str) -> dict[str, Any]:
    return {**ports(), **inventory.get_variables(name)}


@pytest.fixture
def groups(inventory: AnsibleRunner) -> dict[str, list[str]]:
    return {g: list(inventory.get_hosts(g)) for g in ("gateways", "monitoring", "collectors")}


@pytest.fixture(autouse=True)
def _only_where_the_role_runs(request: pytest.FixtureRequest) -> None:
    """Skip a role's checks on nodes of other groups (e.g. keepalived checks on the collector)."""
    if "host" not in request.fixturenames:
        return
    runner = _runner(inventory_path(request.config))
    host_name = str(request.getfixturevalue("host").backend.host)
    # --hosts=ansible://all also selects the lab's device simulator host (group devices): no
    # server role runs there (site.yml targets gateways:monitoring:collectors).
    if host_name in runner.get_hosts("devices") and not any(
        host_name in runner.get_hosts(g) for g in SERVER_GROUPS
    ):
        pytest.skip("device simulator host (group devices): no server role runs there")
    for role, group in ROLE_GROUPS.items():
        if request.node.get_closest_marker(role) is None:
            continue
        name = str(request.getfixturevalue("host").backend.host)
        members = _runner(inventory_path(request.config)).get_hosts(group)
        if name not in members:
            pytest.skip(f"{role} runs on the {group} group only")


@pytest.fixture
def other_host(pytestconfig: pytest.Config) -> Callable[[str], testinfra.host.Host]:
    """A testinfra host of the same inventory, by inventory name."""
    path = inventory_path(pytestconfig)

    def get(host_name: str) -> testinfra.host.Host:
        return testinfra.get_host(f"ansible://{host_name}?ansible_inventory={path}")

    return get


def private_ip(inventory: AnsibleRunner, host_name: str) -> str:
    return str(inventory.get_variables(host_name)["ngd_private_ip"])


def can_connect(client: testinfra.host.Host, address: str, port: int, timeout: float = 2.0) -> bool:
    """True when `client` completes a TCP handshake with address:port (a dropped SYN times out)."""
    code = (
        "import socket,sys\n"
        f"try: socket.create_connection(({address!r}, {port}), timeout={timeout}).close()\n"
        "except OSError: sys.exit(1)\n"
    )
    return bool(client.run(f"python3 -c {shlex.quote(code)}").rc == 0)


@pytest.fixture
def tcp_listener(host: testinfra.host.Host) -> Iterator[Callable[[int], None]]:
    """Start throw-away TCP listeners on the host under test (transient systemd units)."""
    units: list[str] = []

    def start(port: int) -> None:
        if f":{port} " in host.check_output("ss -Htln"):
            return  # the real service (e.g. the gateway) already listens: test against it
        unit = f"ngd-test-listen-{port}"
        host.run(f"systemctl stop {unit}")
        code = (
            "import socket\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('0.0.0.0', {port})); s.listen(16)\n"
            "while True: s.accept()[0].close()\n"
        )
        cmd = host.run(f"systemd-run --unit={unit} --collect python3 -c {shlex.quote(code)}")
        assert cmd.rc == 0, cmd.stderr
        units.append(unit)
        wait_for(lambda: host.socket(f"tcp://0.0.0.0:{port}").is_listening, f"listener on {port}")

    yield start
    for unit in units:
        host.run(f"systemctl stop {unit}")


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
