"""nginx_stream role: stream proxy on the device port with PROXY protocol, stub_status on loopback."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import testinfra.host

from conftest import wait_for

pytestmark = pytest.mark.nginx_stream


def test_nginx_running_with_valid_config(host: testinfra.host.Host) -> None:
    assert host.package("libnginx-mod-stream").is_installed
    nginx = host.service("nginx")
    assert nginx.is_enabled and nginx.is_running
    assert host.run("nginx -t -q").rc == 0
    conf = host.file("/etc/nginx/nginx.conf")
    assert conf.user == "root" and conf.mode == 0o644


def _unit(host: testinfra.host.Host, *properties: str) -> dict[str, str]:
    out = host.check_output(f"systemctl show nginx --property={','.join(properties)}")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_systemd_restarts_a_crashed_nginx_at_once(host: testinfra.host.Host) -> None:
    """systemd's own view of the unit (drop-in loaded): a crash is masked on this node within a
    fraction of a second, and the killed master's workers are killed before the restart."""
    unit = _unit(host, "Restart", "RestartUSec", "KillMode", "StartLimitBurst")
    assert unit["Restart"] == "always", unit
    # systemd prints 100ms, 1s, 1min...: anything in milliseconds, or 0, is under a second.
    assert re.fullmatch(r"0|\d{1,3}ms", unit["RestartUSec"]), unit
    assert unit["KillMode"] in ("mixed", "control-group"), unit
    assert int(unit["StartLimitBurst"]) >= 1, unit


@pytest.mark.disruptive
def test_a_killed_nginx_master_is_replaced_with_its_workers(
    host: testinfra.host.Host, hostvars: dict[str, Any]
) -> None:
    """SIGKILL of the master (a crash): a new master serves the device port again by itself; no
    orphaned worker of the old one is left holding the socket."""
    old = int(_unit(host, "MainPID")["MainPID"])
    assert old > 0
    host.check_output(f"kill -KILL {old}")

    def replaced() -> bool:
        unit = _unit(host, "MainPID", "ActiveState")
        return unit["ActiveState"] == "active" and int(unit["MainPID"]) not in (0, old)

    wait_for(replaced, "systemd to restart nginx", timeout=30)
    new = int(_unit(host, "MainPID")["MainPID"])
    wait_for(
        lambda: host.socket(f"tcp://0.0.0.0:{hostvars['ngd_device_port']}").is_listening,
        "the device port",
        timeout=30,
    )
    # Every nginx process is the new master or its child (workers re-parented to init would be
    # the old master's orphans).
    parents = host.check_output("ps -o pid=,ppid= -C nginx").split()
    pairs = {int(pid): int(ppid) for pid, ppid in zip(parents[::2], parents[1::2], strict=True)}
    assert pairs and all(new in (pid, ppid) for pid, ppid in pairs.items()), (new, pairs)


def test_device_port_listens_on_all_addresses(host: testinfra.host.Host, hostvars: dict[str, Any]) -> None:
    assert host.socket(f"tcp://0.0.0.0:{hostvars['ngd_device_port']}").is_listening


def test_stub_status_only_on_loopback(host: testinfra.host.Host, hostvars: dict[str, Any]) -> None:
    port = hostvars["ngd_nginx_status_port"]
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
    status = host.check_output(f"curl -fsS http://127.0.0.1:{port}/stub_status")
    assert status.startswith("Active connections:")


def test_exporter_reads_stub_status(host: testinfra.host.Host, hostvars: dict[str, Any]) -> None:
    port = hostvars["ngd_nginx_exporter_port"]
    wait_for(lambda: host.socket(f"tcp://0.0.0.0:{port}").is_listening, "nginx exporter")
    metrics = host.check_output(f"curl -fsS http://127.0.0.1:{port}/metrics")
    assert "nginx_up 1" in metrics


def test_device_connection_reaches_local_gateway_with_proxy_header(
    host: testinfra.host.Host, hostvars: dict[str, Any]
) -> None:
    """A device connecting to nginx arrives at the local gateway port prefixed by a PROXY v1 line."""
    data_port = int(hostvars["ngd_gateway_data_port"])
    device_port = int(hostvars["ngd_device_port"])
    if (
        host.socket(f"tcp://0.0.0.0:{data_port}").is_listening
        or host.socket(f"tcp://{hostvars['ngd_private_ip']}:{data_port}").is_listening
    ):
        pytest.skip("a gateway already listens on the data port")
    unit, out = "ngd-test-upstream", "/run/ngd-test-upstream.txt"
    server = (
        "import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(({hostvars['ngd_private_ip']!r}, {data_port})); s.listen(4)\n"
        "c = s.accept()[0]; data = b''\n"
        "while b'hello' not in data:\n"
        "    chunk = c.recv(4096)\n"
        "    if not chunk: break\n"
        "    data += chunk\n"
        f"open({out!r}, 'wb').write(data)\n"
    )
    host.run(f"rm -f {out}")
    assert host.run(f"systemd-run --unit={unit} --collect python3 -c {shlex.quote(server)}").rc == 0
    try:
        wait_for(
            lambda: host.socket(f"tcp://{hostvars['ngd_private_ip']}:{data_port}").is_listening,
            "test upstream",
        )
        client = (
            "import socket,time\n"
            f"c = socket.create_connection(('127.0.0.1', {device_port}), timeout=5)\n"
            "c.sendall(b'hello'); time.sleep(0.5); c.close()\n"
        )
        assert host.run(f"python3 -c {shlex.quote(client)}").rc == 0
        wait_for(lambda: host.file(out).exists, "upstream to record the session")
        received = host.file(out).content
        assert received.startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 "), received
        assert received.endswith(b"\r\nhello"), received
    finally:
        host.run(f"systemctl stop {unit}")
