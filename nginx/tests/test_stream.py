"""Behaviour of nginx/nginx.conf.j2, as the nginx_stream role renders it, under a real nginx
(Debian nginx-light + stream module).

Run inside a private network namespace (nginx/ci/config.sh does `unshare -n`): nginx listens on
127.0.0.1, the two "gateways" are throw-away TCP servers on 127.0.0.2 (local) and 127.0.0.3 (peer).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

RENDER = Path(__file__).resolve().parents[2] / "ansible" / "ci" / "render" / "render.sh"
DEVICE_PORT, TLS_PORT, DATA_PORT, STATUS_PORT = 15678, 15683, 15680, 18081
TCP_REPAIR = 19  # linux/tcp.h: a socket closed in repair mode vanishes without a FIN or RST
LOCAL, PEER = "127.0.0.2", "127.0.0.3"
# The role variables this test changes for each nginx it starts; everything else is the
# nginx_stream role's defaults, as deployed.
VARIANTS: dict[str, dict[str, Any]] = {
    "deployed": {},
    "least_conn": {"nginx_stream_upstream_mode": "least_conn"},
    "fast_keepalive": {"nginx_stream_listen_keepalive": "1s:1s:2"},
    "two_per_address": {"nginx_stream_limit_conn_per_address": 2},
}


@pytest.fixture(scope="session")
def configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nginx.conf per variant, rendered by the nginx_stream role (Ansible, ansible/ci/render)."""
    out = tmp_path_factory.mktemp("nginx")
    # Where this test's nginx listens, runs and logs (loopback, its own ports and files), and
    # a small instance: no other role variable is set here.
    test_host = {
        "nginx_stream_listen_address": "127.0.0.1",
        "nginx_stream_listen_port": DEVICE_PORT,
        "nginx_stream_tls_listen_port": TLS_PORT,
        "nginx_stream_status_port": STATUS_PORT,
        "nginx_stream_upstream_servers": [
            {"address": f"{LOCAL}:{DATA_PORT}"},
            {"address": f"{PEER}:{DATA_PORT}", "backup": True},
        ],
        "nginx_stream_pid": str(out / "nginx.pid"),
        "nginx_stream_error_log": f"{out}/error.log info",
        "nginx_stream_access_log": str(out / "stream-access.log"),
        "nginx_stream_worker_processes": 1,
        "nginx_stream_worker_rlimit_nofile": 1024,
        "nginx_stream_worker_connections": 256,
        "render_variants": VARIANTS,
    }
    result = subprocess.run(
        [str(RENDER), "--play", "nginx", "--out", str(out), "-e", json.dumps(test_host)],
        capture_output=True,
        text=True,
        timeout=600,  # generous: ansible-playbook starts slowly on a CI machine shared with labs
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


class Upstream:
    """A fake gateway: records the first bytes of each session, holds it open until stopped."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, DATA_PORT))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.sessions: list[bytes] = []
        self.conns: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(10)
            data = b""
            while b"\r\n" not in data or not data.endswith(b"!"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            self.sessions.append(data)
            self.conns.append(conn)

    def closed_by_nginx(self, index: int, timeout: float) -> bool:
        """Whether nginx ends session `index` (EOF) within `timeout` seconds."""
        conn = self.conns[index]
        conn.settimeout(timeout)
        try:
            return conn.recv(1) == b""
        except TimeoutError:
            return False

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def nginx(configs: Path) -> Iterator[Any]:
    procs: list[Path] = []

    def start(variant: str = "deployed") -> None:
        conf = configs / f"{variant}.conf"
        subprocess.run(["nginx", "-t", "-q", "-c", str(conf)], check=True)
        subprocess.run(["nginx", "-c", str(conf)], check=True)
        procs.append(conf)
        deadline = time.monotonic() + 20  # generous: CI runs this starved beside the lab deploy
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", STATUS_PORT), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not start listening")

    yield start
    for conf in procs:
        subprocess.run(["nginx", "-c", str(conf), "-s", "stop"], check=False)
    # The next test binds the same ports: wait until this nginx is gone (it removes its pid file).
    deadline = time.monotonic() + 20
    while (configs / "nginx.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def device_session(payload: bytes = b"frame!") -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", DEVICE_PORT), timeout=3)
    conn.sendall(payload)
    return conn


def wait_sessions(upstream: Upstream, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(upstream.sessions) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_local_gateway_first_with_proxy_protocol(nginx: Any) -> None:
    local, peer = Upstream(LOCAL), Upstream(PEER)
    try:
        nginx()
        conn = device_session()
        wait_sessions(local, 1)
        conn.close()
        assert len(local.sessions) == 1 and not peer.sessions
        header, _, body = local.sessions[0].partition(b"\r\n")
        assert header.startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 "), header
        assert header.endswith(f" {DEVICE_PORT}".encode()), header
        assert body == b"frame!"
    finally:
        local.close()
        peer.close()


def test_dead_local_gateway_is_masked_by_the_peer(nginx: Any) -> None:
    peer = Upstream(PEER)  # nothing listens on the local gateway's address
    try:
        nginx()
        conns = [device_session() for _ in range(3)]
        wait_sessions(peer, 3)
        for conn in conns:
            conn.close()
        assert len(peer.sessions) == 3
        assert all(s.startswith(b"PROXY TCP4 ") for s in peer.sessions)
    finally:
        peer.close()


def test_least_conn_spreads_sessions_over_both_gateways(nginx: Any) -> None:
    local, peer = Upstream(LOCAL), Upstream(PEER)
    try:
        nginx("least_conn")
        conns = []
        for _ in range(4):
            conns.append(device_session())
            time.sleep(0.1)
        wait_sessions(local, 2)
        wait_sessions(peer, 2)
        for conn in conns:
            conn.close()
        assert (len(local.sessions), len(peer.sessions)) == (2, 2)
    finally:
        local.close()
        peer.close()


def test_stub_status_answers_on_loopback(nginx: Any) -> None:
    nginx()
    with socket.create_connection(("127.0.0.1", STATUS_PORT), timeout=3) as conn:
        conn.sendall(b"GET /stub_status HTTP/1.0\r\nHost: localhost\r\n\r\n")
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    assert b" 200 " in reply.split(b"\r\n", 1)[0]
    assert b"Active connections:" in reply


def test_a_device_gone_without_a_fin_is_closed_by_keepalive(nginx: Any) -> None:
    """A device whose traffic went elsewhere (the VIP's ARP entry moved to the peer) leaves a
    half-open session here: keepalive probes find it gone, long before proxy_timeout (10 min)."""
    local = Upstream(LOCAL)
    try:
        nginx("fast_keepalive")
        kept, vanished = device_session(), device_session()
        wait_sessions(local, 2)
        vanished.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
        vanished.close()  # no FIN, no RST: nginx's first probe is answered by a RST
        assert local.closed_by_nginx(1, timeout=15.0)
        assert not local.closed_by_nginx(0, timeout=2.0)  # a live device answers the probes
        kept.close()
    finally:
        local.close()


def refused_by_nginx(conn: socket.socket) -> bool:
    """nginx ends a session it refuses before any upstream sees it (EOF or reset)."""
    conn.settimeout(10)
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_sessions_per_client_address_are_limited(nginx: Any) -> None:
    local = Upstream(LOCAL)
    try:
        nginx("two_per_address")
        first, second = device_session(), device_session()
        wait_sessions(local, 2)
        third = device_session()  # a third session from 127.0.0.1: refused
        assert refused_by_nginx(third)
        assert len(local.sessions) == 2
        first.close()
        assert local.closed_by_nginx(0, timeout=15.0)  # nginx ended that session: a slot is free
        fourth = device_session()
        wait_sessions(local, 3)
        assert len(local.sessions) == 3 and local.sessions[2].endswith(b"frame!")
        for conn in (second, third, fourth):
            conn.close()
    finally:
        local.close()
