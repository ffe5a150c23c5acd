#!/usr/bin/env python3
"""Wait until every host of an inventory can be configured: SSH answers, its host key is trusted,
and cloud-init (where the host has it) has finished.

    scripts/ops/wait_hosts.py --inventory ansible/inventories/production/hosts.yml [--timeout 600]
        [--trust-new-host-keys]

New servers take a while after `tofu apply` returns: they boot, sshd starts, cloud-init writes the
host key and installs Python. Ansible run before that fails or, worse, runs against a half-made
host. This waits, bounded (--timeout for all hosts together) and printing progress every
--progress seconds, in three stages:

1. SSH (hosts with an SSH connection): the port accepts and sends an SSH banner.
2. Host keys: ssh reads only the known_hosts files the inventory names (ansible_ssh_common_args,
   written by terraform/inventory_bridge.py: known_hosts with the keys OpenTofu generated, then
   known_hosts.tofu) with StrictHostKeyChecking=yes. A host with no key there is refused (exit 2)
   unless --trust-new-host-keys: then its key is fetched with ssh-keyscan, its fingerprint printed,
   and recorded in the last of those files (trust on first use: an explicit operator choice, which a
   man in the middle at that very moment would pass).
3. cloud-init: `cloud-init status` over Ansible's raw module (no Python needed yet) until every host
   reports done (or has no cloud-init: the lab's containers); an error fails with its --long status.

A host whose key does not match the recorded one fails at once, naming both files: it is either a
rebuilt server with a new key (remove its line after checking out of band) or someone in between.
Exit 0 when every host is ready, 1 on a timeout or failure, 2 on a refused host key.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_PROGRESS_S = 10.0
POLL_S = 2.0


class WaitError(Exception):
    """A host cannot be made ready; the message names it and the fix."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Host:
    name: str
    address: str
    port: int = 22
    ssh: bool = True
    known_hosts: list[Path] = field(default_factory=list)

    def known_hosts_name(self) -> str:
        """How ssh names this host in known_hosts ([addr]:port off port 22)."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


def log(message: str) -> None:
    print(f"wait_hosts: {message}", flush=True)


def known_hosts_files(ssh_common_args: str) -> list[Path]:
    """The files of UserKnownHostsFile in an ssh argument string (empty: ssh's defaults)."""
    words = shlex.split(ssh_common_args or "")
    for i, word in enumerate(words):
        option = word[2:] if word.startswith("-o") and len(word) > 2 else None
        if word == "-o" and i + 1 < len(words):
            option = words[i + 1]
        if option and option.lower().startswith("userknownhostsfile="):
            return [Path(p) for p in option.split("=", 1)[1].split()]
    return []


def hosts_from_inventory(listing: dict[str, object]) -> list[Host]:
    """Hosts of `ansible-inventory --list` output, with their connection details."""
    meta = listing.get("_meta", {})
    hostvars: dict[str, dict[str, object]] = meta.get("hostvars", {}) if isinstance(meta, dict) else {}
    hosts = []
    for name, hv in sorted(hostvars.items()):
        connection = str(hv.get("ansible_connection", "ssh"))
        hosts.append(
            Host(
                name=name,
                address=str(hv.get("ansible_host", name)),
                port=int(str(hv.get("ansible_port", 22))),
                ssh=connection in {"ssh", "smart", "paramiko"},
                known_hosts=known_hosts_files(str(hv.get("ansible_ssh_common_args", ""))),
            )
        )
    return hosts


def ssh_banner(address: str, port: int, timeout: float = 5.0) -> str | None:
    """The SSH identification string the server sends first, or None if it does not (yet)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            data = conn.recv(256)
    except OSError:
        return None
    line = data.split(b"\n", 1)[0].strip().decode("ascii", "replace")
    return line if line.startswith("SSH-") else None


class Deadline:
    def __init__(self, seconds: float, progress_s: float) -> None:
        self.t0 = time.monotonic()
        self.end = self.t0 + seconds
        self.seconds = seconds
        self.progress_s = progress_s
        self.last_report = self.t0

    def left(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def report_due(self) -> bool:
        now = time.monotonic()
        if now - self.last_report >= self.progress_s:
            self.last_report = now
            return True
        return False


def wait_for_ssh(hosts: Iterable[Host], deadline: Deadline) -> None:
    waiting = {h.name: h for h in hosts if h.ssh}
    if not waiting:
        return
    log(f"waiting for SSH on {', '.join(sorted(waiting))} (up to {deadline.seconds:.0f}s in all)")
    while waiting:
        for name, host in sorted(waiting.items()):
            banner = ssh_banner(host.address, host.port, timeout=min(5.0, max(0.5, deadline.left())))
            if banner:
                log(f"{name} ({host.address}:{host.port}) answers: {banner} after {deadline.elapsed():.0f}s")
                del waiting[name]
        if not waiting:
            return
        if deadline.left() <= 0:
            listed = ", ".join(f"{n} ({h.address}:{h.port})" for n, h in sorted(waiting.items()))
            raise WaitError(
                f"no SSH answer after {deadline.seconds:.0f}s from {listed}: is the server running "
                "(hcloud console), is your address in admin_cidrs (the cloud firewall)?"
            )
        if deadline.report_due():
            elapsed = f"{deadline.elapsed():.0f}s/{deadline.seconds:.0f}s"
            log(f"still waiting for SSH ({elapsed}): {', '.join(sorted(waiting))}")
        time.sleep(min(POLL_S, max(0.0, deadline.left())))


def has_known_key(host: Host) -> bool:
    for path in host.known_hosts:
        if path.is_file():
            found = subprocess.run(
                ["ssh-keygen", "-F", host.known_hosts_name(), "-f", str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
            if found.returncode == 0 and found.stdout.strip():
                return True
    return False


def scan_key(host: Host) -> str:
    result = subprocess.run(
        ["ssh-keyscan", "-T", "10", "-t", "ed25519", "-p", str(host.port), host.address],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    lines = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    if not lines:
        raise WaitError(
            f"ssh-keyscan got no ed25519 host key from {host.name} ({host.address}): {result.stderr.strip()}"
        )
    # ssh-keyscan prints the address as ssh would look it up; keep exactly that.
    return lines[0]


def fingerprint(line: str) -> str:
    result = subprocess.run(
        ["ssh-keygen", "-l", "-f", "-"], input=line + "\n", capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or line


def ensure_host_keys(hosts: Iterable[Host], trust_new: bool) -> None:
    for host in hosts:
        if not host.ssh:
            continue
        if not host.known_hosts:
            raise WaitError(
                f"{host.name}: the inventory names no known_hosts file (ansible_ssh_common_args "
                "-o UserKnownHostsFile=...): write the inventory with terraform/inventory_bridge.py",
                code=2,
            )
        if has_known_key(host):
            continue
        files = " and ".join(str(p) for p in host.known_hosts)
        if not trust_new:
            raise WaitError(
                f"no trusted SSH host key for {host.name} ({host.known_hosts_name()}) in {files}: OpenTofu "
                "generated none for it (a server made before host keys were managed, or outside OpenTofu). "
                "Check its key out of band (console: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) "
                f"and add it to {host.known_hosts[-1]}, or accept it on first use with "
                "scripts/deploy.sh ... --trust-new-host-keys",
                code=2,
            )
        line = scan_key(host)
        target = host.known_hosts[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        log(
            f"TRUST ON FIRST USE (--trust-new-host-keys): {host.name} presented {fingerprint(line)}; "
            f"recorded in {target}. Compare it with the server console if you can."
        )


_ONELINE = re.compile(
    r"^(?P<host>\S+) \| (?P<state>[A-Z!]+)(?: \| rc=(?P<rc>-?\d+))?(?: \| \(stdout\)| =>)?\s?(?P<rest>.*)$"
)
KEY_PROBLEMS = ("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key verification failed")

CLOUD_INIT_STATUS = (
    "if command -v cloud-init >/dev/null 2>&1; then cloud-init status 2>&1; else echo 'status: absent'; fi"
)


def parse_cloud_init(output: str) -> dict[str, str]:
    """host -> cloud-init state (done, running, error, absent, ...), 'host key mismatch' or
    'unreachable: ...'. An error message may run over several lines after its host's line."""
    blocks: dict[str, tuple[str, str]] = {}
    current = None
    for line in output.splitlines():
        match = _ONELINE.match(line.strip())
        if match:
            current = match["host"]
            blocks[current] = (match["state"], match["rest"].lstrip(": "))
        elif current is not None:
            state, rest = blocks[current]
            blocks[current] = (state, f"{rest}\n{line}")
    states: dict[str, str] = {}
    for host, (state, rest) in blocks.items():
        if any(problem in rest for problem in KEY_PROBLEMS):
            states[host] = "host key mismatch"
        elif state.startswith(("UNREACHABLE", "FAILED")):
            states[host] = f"unreachable: {' '.join(rest.split())[:300]}"
        else:
            status = re.search(r"status: ([a-z ]+)", rest)
            states[host] = status.group(1).strip() if status else f"unknown: {rest[:200]}"
    return states


def wait_for_cloud_init(
    hosts: list[Host], deadline: Deadline, ansible: Callable[[str], str], long_status: Callable[[str], str]
) -> None:
    pending = {h.name for h in hosts}
    log(f"waiting for cloud-init on {', '.join(sorted(pending))}")
    states: dict[str, str] = {}
    while pending:
        states = parse_cloud_init(ansible(CLOUD_INIT_STATUS))
        for name in sorted(pending):
            state = states.get(name, "no answer")
            if state in {"done", "absent", "disabled"}:
                log(f"{name}: cloud-init {state} after {deadline.elapsed():.0f}s")
                pending.discard(name)
            elif state == "error" or state.startswith("degraded"):
                raise WaitError(f"cloud-init failed on {name}:\n{long_status(name)}")
            elif state == "host key mismatch":
                raise WaitError(
                    f"{name} presents another SSH host key than the one recorded for it: a rebuilt server "
                    "(check its key out of band, then remove its old line from the known_hosts files the "
                    "inventory names) or someone between you and it. Nothing was changed on it.",
                    code=2,
                )
        if not pending:
            return
        if deadline.left() <= 0:
            listed = ", ".join(f"{n} ({states.get(n, 'no answer')})" for n in sorted(pending))
            raise WaitError(f"cloud-init not finished after {deadline.seconds:.0f}s: {listed}")
        if deadline.report_due():
            listed = ", ".join(f"{n}: {states.get(n, 'no answer')}" for n in sorted(pending))
            log(f"cloud-init ({deadline.elapsed():.0f}s/{deadline.seconds:.0f}s): {listed}")
        time.sleep(min(POLL_S, max(0.0, deadline.left())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wait_hosts.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", required=True, type=Path)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds for all hosts")
    parser.add_argument("--progress", type=float, default=DEFAULT_PROGRESS_S, help="seconds between reports")
    parser.add_argument("--trust-new-host-keys", action="store_true", help="record unknown host keys (TOFU)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        print("wait_hosts: --timeout must be > 0 seconds", file=sys.stderr)
        return 2
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    try:
        listed = subprocess.run(
            ["ansible-inventory", "-i", str(args.inventory), "--list"],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=120,
        )
        if listed.returncode != 0:
            raise WaitError(
                f"ansible-inventory failed on {args.inventory}: {listed.stderr.strip()[-500:]}", 2
            )
        hosts = hosts_from_inventory(json.loads(listed.stdout))
        if not hosts:
            raise WaitError(f"{args.inventory} lists no host", 2)
        deadline = Deadline(args.timeout, args.progress)
        wait_for_ssh(hosts, deadline)
        ensure_host_keys(hosts, args.trust_new_host_keys)

        def ansible(command: str, pattern: str = "all") -> str:
            # Connection timeout of its own, within what is left of the deadline.
            connect = str(int(max(5, min(30, deadline.left()))))
            result = subprocess.run(
                [
                    "ansible",
                    pattern,
                    "-i",
                    str(args.inventory),
                    "-o",
                    "-T",
                    connect,
                    "-m",
                    "ansible.builtin.raw",
                    "-a",
                    command,
                ],
                capture_output=True,
                text=True,
                check=False,
                env=env,
                timeout=max(60.0, deadline.left() + 60),
            )
            return result.stdout + result.stderr

        wait_for_cloud_init(
            hosts,
            deadline,
            ansible,
            lambda name: ansible("cloud-init status --long 2>&1 | tail -n 30", name),
        )
    except WaitError as err:
        print(f"wait_hosts: ERROR: {err}", file=sys.stderr)
        return err.code
    log(f"every host is ready ({len(hosts)}) after {deadline.elapsed():.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
