"""Waiting for new hosts (scripts/ops/wait_hosts.py) against a real OpenSSH server on loopback:
Debian's sshd (from its package, unpacked), started late as a booting server would be, in a mount
namespace of its own (its privilege-separation user and /run/sshd exist only there). The inventory's
ssh options are the bridge's (terraform/inventory_bridge.py ssh_args); Ansible connects over SSH
with StrictHostKeyChecking=yes. cloud-init is a stand-in script on the session's PATH (a real one
runs only on a booted cloud server): it reports `running`, then the outcome the test chooses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "terraform"))
sys.path.insert(0, str(REPO / "scripts/ops"))

import inventory_bridge  # noqa: E402
import wait_hosts  # noqa: E402

SCRIPT = REPO / "scripts/ops/wait_hosts.py"


def sshd_binary(cache: Path) -> Path:
    """Debian's sshd, unpacked from its package (not installed: no service, no user on this machine)."""
    sshd = cache / "root/usr/sbin/sshd"
    if not sshd.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "openssh-server"], cwd=cache, check=True, capture_output=True)
        deb = next(cache.glob("openssh-server_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(cache / "root")], check=True)
    return sshd


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    port: int
    host_key_pub: str
    client_key: Path
    workdir: Path
    cloud_init_final: Path

    def start(self) -> None:
        """Let sshd start (it waits for this, as a server that is still booting)."""
        (self.workdir / "go").touch()

    def known_hosts_line(self, key: str | None = None) -> str:
        return f"[127.0.0.1]:{self.port} {' '.join((key or self.host_key_pub).split()[:2])}\n"


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Server]:
    cache = Path(os.environ.get("NGD_CACHE", Path.home() / ".cache/nanogridata")) / "openssh-server-unpacked"
    binary = sshd_binary(cache)
    work = tmp_path / "sshd"
    (work / "bin").mkdir(parents=True)
    host_pub = keygen(work / "hostkey")
    client_pub = keygen(work / "client")
    (work / "authorized_keys").write_text(client_pub + "\n")
    passwd = work / "passwd"
    passwd.write_text(Path("/etc/passwd").read_text() + "sshd:x:64999:65534::/run/sshd:/usr/sbin/nologin\n")
    final = work / "cloud-init-final"
    final.write_text("done\n")
    cloud_init = work / "bin/cloud-init"
    cloud_init.write_text(
        textwrap.dedent(f"""\
            #!/bin/sh
            n=$(cat {work}/count 2>/dev/null || echo 0); echo $((n + 1)) >{work}/count
            if [ "$2" = --long ]; then echo "status: $(cat {final})"; echo "detail: stand-in"; exit 1; fi
            if [ "$n" -lt 2 ]; then echo "status: running"; else echo "status: $(cat {final})"; fi
            """)
    )
    cloud_init.chmod(0o755)
    port = free_port()
    (work / "sshd_config").write_text(
        textwrap.dedent(f"""\
            Port {port}
            ListenAddress 127.0.0.1
            HostKey {work}/hostkey
            PidFile {work}/sshd.pid
            AuthorizedKeysFile {work}/authorized_keys
            StrictModes no
            UsePAM no
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            SetEnv PATH={work}/bin:/usr/local/bin:/usr/bin:/bin
            LogLevel ERROR
            """)
    )
    # sshd starts only on Server.start(): a test can see the port closed first, as after `tofu apply`.
    script = (
        f"mount --bind {passwd} /etc/passwd && mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && "
        f"i=0; while [ ! -e {work}/go ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i + 1)); done; "
        f"exec {binary} -D -e -f {work}/sshd_config"
    )
    proc = subprocess.Popen(
        ["unshare", "-m", "sh", "-c", script],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "sshd.log", "w"),  # noqa: SIM115 - closed with the process
        start_new_session=True,
    )
    try:
        yield Server(port, host_pub, work / "client", work, final)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def inventory(tmp_path: Path, server: Server) -> Path:
    inv_dir = tmp_path / "inventory"
    inv_dir.mkdir(exist_ok=True)
    path = inv_dir / "hosts.yml"
    args = inventory_bridge.ssh_args(inv_dir).replace("'", "''")
    path.write_text(
        textwrap.dedent(f"""\
            all:
              hosts:
                node1:
                  ansible_host: 127.0.0.1
                  ansible_port: {server.port}
                  ansible_user: root
                  ansible_ssh_private_key_file: {server.client_key}
                  ansible_ssh_common_args: '{args}'
            """)
    )
    return path


def wait(
    path: Path, *extra: str, timeout: float = 120, path_prefix: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg")}
    if path_prefix:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--inventory",
            str(path),
            "--timeout",
            str(timeout),
            "--progress",
            "1",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout + 180,
        check=False,
    )


pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")


def test_a_host_with_its_key_from_opentofu_is_waited_for(tmp_path: Path, sshd: Server) -> None:
    path = inventory(tmp_path, sshd)
    (path.parent / "known_hosts").write_text(sshd.known_hosts_line())
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg")}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--inventory", str(path), "--timeout", "300", "--progress", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "still waiting for SSH" in line:
                sshd.start()  # the server "finishes booting" only once the wait has reported progress
                break
        out, err = proc.communicate(timeout=400)
    finally:
        proc.kill()
    stdout = "".join(seen) + out
    assert proc.returncode == 0, stdout + err
    assert "still waiting for SSH" in stdout
    assert "node1 (127.0.0.1:" in stdout and "answers: SSH-2.0-OpenSSH" in stdout
    assert "node1: cloud-init done" in stdout  # after the stand-in's "running"
    assert not (path.parent / "known_hosts.tofu").exists()


def test_a_host_without_a_trusted_key_is_refused(tmp_path: Path, sshd: Server) -> None:
    sshd.start()
    path = inventory(tmp_path, sshd)
    result = wait(path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no trusted SSH host key for node1" in result.stderr
    assert "--trust-new-host-keys" in result.stderr
    assert not (path.parent / "known_hosts.tofu").exists()


def test_trust_on_first_use_records_the_key_it_was_shown(tmp_path: Path, sshd: Server) -> None:
    sshd.start()
    path = inventory(tmp_path, sshd)
    result = wait(path, "--trust-new-host-keys")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TRUST ON FIRST USE" in result.stdout and "SHA256:" in result.stdout
    recorded = (path.parent / "known_hosts.tofu").read_text()
    assert recorded.split() == sshd.known_hosts_line().split()


def test_a_host_presenting_another_key_fails_at_once(tmp_path: Path, sshd: Server) -> None:
    sshd.start()
    path = inventory(tmp_path, sshd)
    other = keygen(tmp_path / "other")
    (path.parent / "known_hosts").write_text(sshd.known_hosts_line(other))
    started = time.monotonic()
    result = wait(path, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "presents another SSH host key than the one recorded" in result.stderr
    assert time.monotonic() - started < 120  # not the whole timeout


def test_a_cloud_init_error_fails_with_its_status(tmp_path: Path, sshd: Server) -> None:
    sshd.cloud_init_final.write_text("error\n")
    sshd.start()
    path = inventory(tmp_path, sshd)
    (path.parent / "known_hosts").write_text(sshd.known_hosts_line())
    result = wait(path)
    assert result.returncode == 1
    assert "cloud-init failed on node1" in result.stderr and "detail: stand-in" in result.stderr


def test_no_ssh_within_the_timeout_names_the_host(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(
        f"all:\n  hosts:\n    gw-a:\n      ansible_host: 127.0.0.1\n      ansible_port: {free_port()}\n"
    )
    result = wait(path, timeout=3)
    assert result.returncode == 1
    assert "no SSH answer after 3s from gw-a (127.0.0.1:" in result.stderr


def test_hosts_without_ssh_wait_for_cloud_init_only(tmp_path: Path) -> None:
    """The lab's containers (docker connection) have no SSH and no cloud-init: ready at once."""
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    gw-a:\n      ansible_connection: local\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # This machine may have a real cloud-init that never ran: the host stands for one where it is done.
    (bin_dir / "cloud-init").write_text("#!/bin/sh\necho 'status: done'\n")
    (bin_dir / "cloud-init").chmod(0o755)
    result = wait(path, timeout=60, path_prefix=bin_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "waiting for SSH" not in result.stdout
    assert "gw-a: cloud-init done" in result.stdout


def test_known_hosts_files_are_read_from_the_ssh_options() -> None:
    args = inventory_bridge.ssh_args(Path("/srv/inv"))
    assert wait_hosts.known_hosts_files(args) == [
        Path("/srv/inv/known_hosts"),
        Path("/srv/inv/known_hosts.tofu"),
    ]
    assert wait_hosts.known_hosts_files("-o StrictHostKeyChecking=yes") == []


def test_ansible_output_is_read_per_host() -> None:
    output = (
        "gw-a | CHANGED | rc=0 | (stdout) status: running\n"
        "gw-b | UNREACHABLE!: Task failed: Failed to connect to the host via ssh: @@@@@@@@@\n"
        "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
        "Host key verification failed.\n"
        "mon | UNREACHABLE!: Task failed: ssh: connect to host 10.0.0.20 port 22: Connection refused\n"
        "collector | CHANGED | rc=0 | (stdout) status: absent\n"
    )
    assert wait_hosts.parse_cloud_init(output) == {
        "gw-a": "running",
        "gw-b": "host key mismatch",
        "mon": "unreachable: Task failed: ssh: connect to host 10.0.0.20 port 22: Connection refused",
        "collector": "absent",
    }
