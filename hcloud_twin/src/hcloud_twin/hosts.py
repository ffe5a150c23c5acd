"""Opt-in host backend: every server the twin creates becomes a lab systemd container.

A server gets a container from the lab image (``scripts/lab.sh image``, with ``scripts/lab.sh
run-args``: the lab's one definition of a host container) plus openssh-server and nftables, as the
Debian cloud image has them. Its public IPv4 is its address on a docker network standing for the
internet side (the twin's ``public_ipv4_pool`` is that network's range), its private addresses are
on one docker network per hcloud network; root's ``authorized_keys`` holds the server's SSH keys,
and the cloud-config subset the terraform module writes (``hostname``, ``ssh_pwauth``,
``packages``, host keys from ``ssh_keys``/``ssh_deletekeys``/``ssh_genkeytypes``) is applied.
The cloud firewalls applied to a server are enforced on its public interface (eth0) with
nftables, as Hetzner filters public traffic only; a floating IP reaches only the server it is
assigned to (the others never answer ARP for it), while configuring it on the interface stays the
host's own job (keepalived's), as in Hetzner.

The twin calls :meth:`DockerHosts.on_action` for each action that succeeds, with its lock held:
work is queued to one worker thread, which reads the state under the lock and runs docker
outside it. Like a real boot, sshd answers some seconds after the create action succeeded.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from .core import JSON
from .service import HcloudTwin

log = logging.getLogger("hcloud_twin.hosts")
LABEL = "io.nanogridata.lab"
HOST_PACKAGES = ("openssh-server", "nftables")
# Part of the host image's tag: a change to how the image is derived builds it anew.
HOST_IMAGE_REVISION = 2
HOST_IMAGE_REPO = "ngd-hcloud-twin-host"


def address_pools(public_subnet: str) -> dict[str, str]:
    """The twin's address pools on the public docker network (a /24, gateway .1 = the docker
    host): servers' primary IPv4s from the lower half, floating IPs from the top quarter."""
    public = ipaddress.ip_network(public_subnet)
    if public.version != 4 or public.prefixlen != 24:
        raise ValueError(f"{public_subnet}: give an IPv4 /24 such as 172.30.71.0/24")
    return {
        "public_ipv4_pool": str(next(public.subnets(new_prefix=25))),
        "floating_ipv4_pool": str(list(public.subnets(new_prefix=26))[-1]),
    }


class HostError(RuntimeError):
    """A docker or host command failed."""


class DockerHosts:
    def __init__(self, repo_root: Path, lab: str, public_subnet: str, docker: str = "docker") -> None:
        self.repo_root = repo_root
        self.lab = lab
        self.public_subnet = ipaddress.ip_network(public_subnet)
        self.docker = docker
        self.public_net = f"ngd-{lab}-public"
        self.queue: queue.Queue[JSON | None] = queue.Queue()
        self.errors: list[str] = []
        self.busy = threading.Event()
        self.twin: HcloudTwin | None = None
        self.thread: threading.Thread | None = None
        self.containers: dict[int, str] = {}  # server id -> container name
        self.image = ""
        self.run_args: list[str] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def prepare(self) -> str:
        """Build (or find) the host image, create the public network; returns the docker host's
        address on it, where the hosts reach the API."""
        lab_sh = str(self.repo_root / "scripts/lab.sh")
        lab_image = self._run([lab_sh, "image", "--lab", self.lab], timeout=1800).strip().splitlines()[-1]
        self.run_args = self._run([lab_sh, "run-args", "--lab", self.lab]).splitlines()
        self.image = self._host_image(lab_image)
        self._ensure_network(self.public_net, str(self.public_subnet))
        return str(next(self.public_subnet.hosts()))

    def attach(self, twin: HcloudTwin) -> None:
        """Follow the twin's actions (after prepare())."""
        self.twin = twin
        twin.state.listeners.append(self.on_action)
        self.thread = threading.Thread(target=self._work, name="hcloud-twin-hosts", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop following, then remove every container and network of this lab."""
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join(timeout=300)
            self.thread = None
        ids = self._run([self.docker, "ps", "-aq", "--filter", f"label={LABEL}={self.lab}"]).split()
        if ids:
            self._run([self.docker, "rm", "-f", *ids], timeout=300)
        nets = self._run([self.docker, "network", "ls", "-q", "--filter", f"label={LABEL}={self.lab}"]).split()
        if nets:
            self._run([self.docker, "network", "rm", *nets], timeout=120)

    def wait_idle(self, timeout: float) -> None:
        """Until every queued action was carried out (tests); raises on a backend error."""
        deadline = time.monotonic() + timeout
        while not (self.queue.empty() and not self.busy.is_set()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"host backend still busy after {timeout} s")
            time.sleep(0.1)
        if self.errors:
            raise HostError("; ".join(self.errors))

    def on_action(self, action: JSON) -> None:
        self.busy.set()
        self.queue.put(action)

    # -- the worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            action = self.queue.get()
            if action is None:
                return
            try:
                self._carry_out(action)
            except (HostError, subprocess.TimeoutExpired, OSError) as exc:
                log.error("host backend: %s failed: %s", action["command"], exc)
                self.errors.append(f"{action['command']}: {exc}")
            finally:
                if self.queue.empty():
                    self.busy.clear()

    def _carry_out(self, action: JSON) -> None:
        command = action["command"]
        servers = [r["id"] for r in action["resources"] if r["type"] == "server"]
        if command == "create_server":
            self._create(servers[0])
        elif command == "delete_server":
            name = self.containers.pop(servers[0], None)
            if name:
                self._run([self.docker, "rm", "-f", name], timeout=120)
        elif command in ("stop_server", "shutdown_server"):
            self._run([self.docker, "stop", self.containers[servers[0]]], timeout=120)
        elif command in ("start_server", "reboot_server", "reset_server"):
            verb = "start" if command == "start_server" else "restart"
            self._run([self.docker, verb, self.containers[servers[0]]], timeout=120)
            self._wait_booted(self.containers[servers[0]])
            self._apply_filters()
        elif command in ("apply_firewall", "remove_firewall", "set_firewall_rules", "assign_floating_ip", "unassign_floating_ip"):
            self._apply_filters()
            if command.endswith("floating_ip"):
                self._forget_neighbours()

    # -- servers -------------------------------------------------------------------------------
    def _create(self, server_id: int) -> None:
        assert self.twin is not None
        with self.twin.lock:
            server = self.twin.state.resources["servers"].get(server_id)
            if server is None:
                return  # deleted before we got to it
            user_data = self.twin.state.user_data.get(server_id, "")
            keys = list(self.twin.state.server_keys.get(server_id, []))
            networks = {n["id"]: n for n in self.twin.state.resources["networks"].values()}
            server = dict(server)
        config = _cloud_config(user_data)
        hostname = str(config.get("hostname") or server["name"])
        name = f"ngd-{self.lab}-{server['name']}"
        public = server["public_net"]["ipv4"]
        args = [self.docker, "run", "-d", "--name", name, "--hostname", hostname, "--label", f"{LABEL}={self.lab}"]
        args += ["--network", self.public_net]
        if public:
            args += ["--ip", public["ip"]]
        self._run([*args, *self.run_args, self.image], timeout=300)
        self.containers[server_id] = name
        for attachment in server["private_net"]:
            network = networks[attachment["network"]]
            subnet = next(
                s["ip_range"]
                for s in network["subnets"]
                if ipaddress.ip_address(attachment["ip"]) in ipaddress.ip_network(s["ip_range"])
            )
            docker_net = f"ngd-{self.lab}-net{network['id']}"
            self._ensure_network(docker_net, subnet)
            self._run([self.docker, "network", "connect", "--ip", attachment["ip"], docker_net, name], timeout=120)
        self._wait_booted(name)
        setup = [
            "set -e",
            "install -d -m 700 /root/.ssh",
            "cat > /root/.ssh/authorized_keys",
            "chmod 600 /root/.ssh/authorized_keys",
            *host_key_setup(config),
        ]
        if config.get("ssh_pwauth") is False:
            setup.append("echo 'PasswordAuthentication no' > /etc/ssh/sshd_config.d/50-cloud-init.conf")
        packages = [str(p) for p in config.get("packages") or []]
        if packages:
            setup.append(
                f"dpkg -s {' '.join(packages)} >/dev/null 2>&1 || {{ apt-get update -qq && "
                f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {' '.join(packages)} >/dev/null; }}"
            )
        setup.append("systemctl enable --now ssh >/dev/null 2>&1 && systemctl restart ssh")
        self._run([self.docker, "exec", "-i", name, "sh", "-c", "\n".join(setup)], stdin="\n".join(keys) + "\n", timeout=600)
        self._apply_filters()

    # -- filters: the cloud firewall and floating IP routing -------------------------------------
    def _apply_filters(self) -> None:
        assert self.twin is not None
        with self.twin.lock:
            state = self.twin.state
            state.refresh()
            plans = {
                self.containers[sid]: nft_ruleset(
                    [
                        fw
                        for fw in state.resources["firewalls"].values()
                        if {"type": "server", "server": {"id": sid}} in fw["applied_to"]
                    ],
                    [f["ip"] for f in state.resources["floating_ips"].values() if f["server"] != sid and f["type"] == "ipv4"],
                )
                for sid in self.containers
                if sid in state.resources["servers"] and state.resources["servers"][sid]["status"] != "off"
            }
        for name, ruleset in plans.items():
            self._run([self.docker, "exec", "-i", name, "nft", "-f", "-"], stdin=ruleset, timeout=60)

    def _forget_neighbours(self) -> None:
        """The docker host's stale ARP entries would keep sending a moved floating IP's traffic
        to its old server for up to a minute; Hetzner's routing switches at once."""
        bridge = self._run([self.docker, "network", "inspect", "-f", "{{.Id}}", self.public_net]).strip()[:12]
        subprocess.run(["ip", "neigh", "flush", "dev", f"br-{bridge}"], capture_output=True, check=False, timeout=30)

    # -- docker helpers --------------------------------------------------------------------------
    def _host_image(self, lab_image: str) -> str:
        """The lab image plus what a Debian cloud image has and the lab's lacks (built once)."""
        tag = f"{HOST_IMAGE_REPO}:{lab_image.rsplit(':', 1)[-1]}-r{HOST_IMAGE_REVISION}"
        if subprocess.run([self.docker, "image", "inspect", tag], capture_output=True, check=False).returncode == 0:
            return tag
        builder = f"ngd-{self.lab}-image-build"
        self._run([self.docker, "rm", "-f", builder])
        self._run([self.docker, "run", "-d", "--name", builder, "--label", f"{LABEL}={self.lab}", *self.run_args, lab_image])
        try:
            self._wait_booted(builder)
            install = (
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
                f"{' '.join(HOST_PACKAGES)} >/dev/null && apt-get clean"
                # As on a cloud image, sshd starts only once cloud-init has written the host keys
                # and root's authorized_keys (_create does): never with the image's shared keys
                # or before the key is there (a client would record a key that changes, or be refused).
                " && systemctl disable ssh.service >/dev/null 2>&1 && rm -f /etc/ssh/ssh_host_*_key*"
            )
            self._run([self.docker, "exec", builder, "sh", "-c", install], timeout=900)
            self._run([self.docker, "stop", builder], timeout=120)
            self._run([self.docker, "commit", builder, tag], timeout=300)
        finally:
            self._run([self.docker, "rm", "-f", builder], timeout=120)
        self._prune_host_images(keep=tag)
        return tag

    def _prune_host_images(self, keep: str) -> None:
        """Host images of older recipes are dead weight (scripts/lab/image.sh does the same for
        the lab's): each goes unless a container still uses it (then `docker image rm` refuses)."""
        listed = self._run([self.docker, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", HOST_IMAGE_REPO])
        for ref in listed.split():
            if ref != keep:
                subprocess.run([self.docker, "image", "rm", ref], capture_output=True, check=False, timeout=120)

    def _ensure_network(self, name: str, subnet: str) -> None:
        if subprocess.run([self.docker, "network", "inspect", name], capture_output=True, check=False).returncode == 0:
            return
        self._run([self.docker, "network", "create", "--subnet", subnet, "--label", f"{LABEL}={self.lab}", name], timeout=60)

    def _wait_booted(self, name: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = subprocess.run(
                [self.docker, "exec", name, "systemctl", "is-system-running"],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            ).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise HostError(f"{name}: systemd did not finish booting within {timeout} s")

    def _run(self, args: list[str], stdin: str | None = None, timeout: float = 60) -> str:
        done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise HostError(f"{' '.join(args[:4])}... exited {done.returncode}: {done.stderr.strip()[-500:]}")
        return done.stdout


SSH_KEY_TYPES = ("rsa", "ecdsa", "ed25519")


def host_key_setup(config: dict[str, Any]) -> list[str]:
    """Shell lines for the host keys as cloud-init's ssh module makes them: ``ssh_deletekeys``
    (default true) removes the image's keys; the keys given in ``ssh_keys`` are written (and then
    none is generated, as cloud-init does), otherwise one per ``ssh_genkeytypes`` type is generated
    (default rsa, ecdsa, ed25519). A client that recorded a key given in the user data (OpenTofu's
    host keys) verifies the first connection."""
    lines = []
    if config.get("ssh_deletekeys", True) is not False:
        lines.append("rm -f /etc/ssh/ssh_host_*_key*")
    given = config.get("ssh_keys")
    if isinstance(given, dict) and given:
        for key_type in SSH_KEY_TYPES:
            private, public = given.get(f"{key_type}_private"), given.get(f"{key_type}_public")
            path = f"/etc/ssh/ssh_host_{key_type}_key"
            if isinstance(private, str) and private.strip():
                encoded = base64.b64encode(private.strip().encode() + b"\n").decode()
                lines.append(f"echo {encoded} | base64 -d > {path} && chmod 600 {path}")
            if isinstance(public, str) and public.strip():
                encoded = base64.b64encode(public.strip().encode() + b"\n").decode()
                lines.append(f"echo {encoded} | base64 -d > {path}.pub && chmod 644 {path}.pub")
        return lines
    types = config.get("ssh_genkeytypes")
    wanted = [str(t) for t in types] if isinstance(types, list) else list(SSH_KEY_TYPES)
    for key_type in wanted:
        if key_type in SSH_KEY_TYPES:
            path = f"/etc/ssh/ssh_host_{key_type}_key"
            lines.append(f"test -f {path} || ssh-keygen -q -t {key_type} -N '' -f {path}")
    return lines


def _cloud_config(user_data: str) -> dict[str, Any]:
    if not user_data.startswith("#cloud-config"):
        return {}
    import yaml

    loaded = yaml.safe_load(user_data)
    return loaded if isinstance(loaded, dict) else {}


def nft_ruleset(firewalls: list[JSON], foreign_floating_ips: list[str]) -> str:
    """One server's filters: its cloud firewalls on eth0 (none applied: all open, as in Hetzner;
    applied: inbound limited to the rules, stateful) and no ARP answers for floating IPs that are
    routed to other servers."""
    lines = ["table inet hcloud_twin", "delete table inet hcloud_twin", "table arp hcloud_twin", "delete table arp hcloud_twin"]
    rules = [rule for fw in firewalls for rule in fw["rules"]]
    lines += ["table inet hcloud_twin {", "  chain input {", "    type filter hook input priority filter; policy accept;"]
    if firewalls:
        lines += ['    iifname != "eth0" accept', "    ct state established,related accept"]
        lines += [f"    {line}" for rule in rules if rule["direction"] == "in" for line in _accepts(rule, "saddr")]
        lines.append('    iifname "eth0" drop')
    lines += ["  }", "  chain output {", "    type filter hook output priority filter; policy accept;"]
    outbound = [rule for rule in rules if rule["direction"] == "out"]
    if outbound:  # Hetzner: without outbound rules everything may leave
        lines += ['    oifname != "eth0" accept', "    ct state established,related accept"]
        lines += [f"    {line}" for rule in outbound for line in _accepts(rule, "daddr")]
        lines.append('    oifname "eth0" drop')
    lines += [
        "  }",
        "}",
        "table arp hcloud_twin {",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
    ]
    if foreign_floating_ips:
        lines.append(f'    iifname "eth0" arp daddr ip {{ {", ".join(foreign_floating_ips)} }} drop')
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _accepts(rule: JSON, direction: str) -> list[str]:
    cidrs = rule["source_ips"] if direction == "saddr" else rule["destination_ips"]
    port = rule["port"]
    lines = []
    for family, proto_v6 in (("ip", False), ("ip6", True)):
        nets = [c for c in cidrs if (":" in c) == proto_v6]
        if not nets:
            continue
        match = f"{family} {direction} {{ {', '.join(nets)} }}"
        protocol = rule["protocol"]
        if protocol in ("tcp", "udp"):
            dport = "" if port in (None, "any") else f" dport {port}"
            lines.append(
                f"{match} meta l4proto {protocol} {protocol}{dport} accept"
                if dport
                else f"{match} meta l4proto {protocol} accept"
            )
        elif protocol == "icmp":
            lines.append(f"{match} meta l4proto {'ipv6-icmp' if proto_v6 else 'icmp'} accept")
        else:
            lines.append(f"{match} meta l4proto {protocol} accept")
    return lines
