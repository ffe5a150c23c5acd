"""Two real keepalived nodes (unicast VRRPv3, advert 0.25 s) in two private network namespaces
joined by a veth pair, each calling notify.py. The MASTER's keepalived is SIGKILLed (as a crashed
host would stop advertising) and the test measures when the backup takes over: the VIP on its
interface (provider none), its metrics file, and the floating IP in the twin (provider hcloud).

Node A lives in the namespace `unshare -n` gives the test; node B in a nested one, reached with
nsenter. The hcloud twin listens on A's veth address inside that private namespace, the only
place both nodes can reach (no host interface is involved)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIP_ID, TWIN_SRC
from ngd_vip.metrics import parse
from test_keepalived_real import KEEPALIVED, install, results

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unshare -n and keepalived need root")

A_IP, B_IP, VIP_L2 = "10.253.53.11", "10.253.53.12", "10.253.53.100"
FIP = "198.51.100.7"
SERVER_A, SERVER_B = 42, 41
TWIN_PORT = 18080  # free by construction: the namespace is new


def node_conf(
    tmp: Path, name: str, *, lib: Path, python: str, src: str, peer: str, prio: int, ifname: str, vip: str
) -> Path:
    notify = f"{python} {lib}/notify.py --config {tmp}/{name}.toml"
    vip_block = f"  virtual_ipaddress {{\n    {vip} dev {ifname}\n  }}\n"
    conf = tmp / f"{name}.conf"
    conf.write_text(f"""global_defs {{
  router_id {name}
  vrrp_version 3
  enable_script_security
  script_user root
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface {ifname}
  virtual_router_id 53
  priority {prio}
  advert_int 0.25
  unicast_src_ip {src}
  unicast_peer {{
    {peer}
  }}
{vip_block}  notify "{notify}"
}}
""")
    return conf


def node_toml(tmp: Path, name: str, *, provider: str, server_id: int, token_file: Path) -> None:
    text = f'provider = "{provider}"\nmetrics_dir = "{tmp}/{name}-textfile"\n'
    if provider == "hcloud":
        text += (
            f'manage_interface = false\n[hcloud]\ntoken_file = "{token_file}"\n'
            f"floating_ip_id = {FIP_ID}\nserver_id = {server_id}\n"
            f'endpoint = "http://{A_IP}:{TWIN_PORT}/v1"\n'
        )
    (tmp / f"{name}.toml").write_text(text)


def run_pair(tmp: Path, provider: str, token: str) -> tuple[dict[str, str], subprocess.CompletedProcess[str]]:
    lib = install(tmp)
    token_file = tmp / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    have_deb_hcloud = subprocess.run(["/usr/bin/python3", "-c", "import hcloud"], check=False).returncode == 0
    if provider == "hcloud" and not have_deb_hcloud:
        pytest.fail("python3-hcloud (Debian) is missing: keepalived/ci/unit.sh installs it")
    # keepalived 2.2.7 refuses an instance without virtual_ipaddress ("No VIP specified"), so with
    # hcloud keepalived carries the floating IP itself and the hook only moves it in the cloud.
    vip = f"{VIP_L2}/24" if provider == "none" else f"{FIP}/32"
    py = "/usr/bin/python3"
    conf_a = node_conf(tmp, "a", lib=lib, python=py, src=A_IP, peer=B_IP, prio=150, ifname="ngd0", vip=vip)
    conf_b = node_conf(tmp, "b", lib=lib, python=py, src=B_IP, peer=A_IP, prio=100, ifname="ngd1", vip=vip)
    node_toml(tmp, "a", provider=provider, server_id=SERVER_A, token_file=token_file)
    node_toml(tmp, "b", provider=provider, server_id=SERVER_B, token_file=token_file)
    prom_a, prom_b = tmp / "a-textfile/keepalived_VI_1.prom", tmp / "b-textfile/keepalived_VI_1.prom"
    has_twin = int(provider == "hcloud")
    twin = ""
    if has_twin:
        twin = f"""
(exec env PYTHONPATH={TWIN_SRC} timeout 120 {sys.executable} -m hcloud_twin --token-file {token_file} \\
  --port {TWIN_PORT} --private-namespace-address {A_IP} --server {SERVER_A}=gw-a --server {SERVER_B}=gw-b \\
  --floating-ip {FIP_ID}={FIP}@{SERVER_A} --action-seconds 0.3) > {tmp}/twin.out 2>&1 &
twin=$!
for _ in $(seq 1 400); do grep -q endpoint {tmp}/twin.out 2>/dev/null && break; sleep 0.05; done
"""
    script = f"""
set -u
ms() {{ echo $(( ($(date +%s%N) - $1) / 1000000 )); }}
# The floating IP's server, read from the twin with bash's /dev/tcp (a Python start per poll is too slow).
# The read has a timeout: a twin starved of CPU must cost one poll, not the script's 120 s budget.
fip_server() {{
  exec 3<>/dev/tcp/{A_IP}/{TWIN_PORT} || return 0
  printf 'GET /v1/floating_ips/{FIP_ID} HTTP/1.1\\r\\nHost: twin\\r\\nConnection: close\\r\\n' >&3
  printf 'Authorization: Bearer {token}\\r\\n\\r\\n' >&3
  timeout 2 sed -n 's/.*"server": \\([0-9]*\\).*/\\1/p' <&3
  exec 3<&-
}}
ip link set lo up
ip link add ngd0 type veth peer name ngd1
# node B: its own namespace, waiting for its end of the veth, then for A to be MASTER (started
# together on a loaded host, B may win the first election and move the IP; not this test's topic)
unshare -n bash -c 'ip link set lo up; while ! ip link show ngd1 >/dev/null 2>&1; do sleep 0.02; done
  ip addr add {B_IP}/24 dev ngd1; ip link set ngd1 up
  for _ in $(seq 1 400); do [ -e {tmp}/go-b ] && break; sleep 0.05; done
  exec env NGD_VIP_LOG_FILE={tmp}/b-notify.log timeout 60 {KEEPALIVED} -n -l -D -P -f {conf_b} \\
    -p {tmp}/b.pid -r {tmp}/b-vrrp.pid > {tmp}/b.log 2>&1' &
bns=$!
sleep 0.2
ip link set ngd1 netns $bns
ip addr add {A_IP}/24 dev ngd0; ip link set ngd0 up
{twin}
setsid env NGD_VIP_LOG_FILE={tmp}/a-notify.log timeout 60 {KEEPALIVED} -n -l -D -P -f {conf_a} \\
  -p {tmp}/a.pid -r {tmp}/a-vrrp.pid > {tmp}/a.log 2>&1 &
apid=$!
t=$(date +%s%N)
while [ "$(ms $t)" -lt 20000 ]; do
  grep -q 'vrrp_state{{instance="VI_1"}} 2' {prom_a} 2>/dev/null && break
  sleep 0.05
done
touch {tmp}/go-b
# steady state (at most 20 s): A MASTER (for hcloud: holding the floating IP), B BACKUP
t=$(date +%s%N)
while [ "$(ms $t)" -lt 20000 ]; do
  grep -q 'vrrp_state{{instance="VI_1"}} 2' {prom_a} 2>/dev/null \\
    && grep -q 'vrrp_state{{instance="VI_1"}} 1' {prom_b} 2>/dev/null \\
    && {{ [ {has_twin} = 0 ] || [ "$(fip_server)" = "{SERVER_A}" ]; }} && break
  sleep 0.05
done
cp {prom_a} {tmp}/a-before.prom; cp {prom_b} {tmp}/b-before.prom
sleep 1
t0=$(date +%s%N)
kill -KILL -- -$apid                      # A's keepalived, parent and VRRP child: no goodbye advert
vip_ms=-1; state_ms=-1; fip_ms=-1
while [ "$(ms $t0)" -lt 20000 ]; do       # at most 20 s
  if [ $vip_ms -lt 0 ]; then
    nsenter -t $bns -n ip -o addr show dev ngd1 | grep -q -e ' {VIP_L2}/' -e ' {FIP}/' && vip_ms=$(ms $t0)
  fi
  if [ $state_ms -lt 0 ]; then grep -q 'vrrp_state{{instance="VI_1"}} 2' {prom_b} && state_ms=$(ms $t0); fi
  if [ {has_twin} = 1 ] && [ $fip_ms -lt 0 ]; then
    [ "$(fip_server)" = "{SERVER_B}" ] && fip_ms=$(ms $t0)
  fi
  [ $vip_ms -ge 0 ] && [ $state_ms -ge 0 ] && {{ [ {has_twin} = 0 ] || [ $fip_ms -ge 0 ]; }} && break
  sleep 0.01
done
echo "RESULT vip_ms=$vip_ms"
echo "RESULT state_ms=$state_ms"
echo "RESULT fip_ms=$fip_ms"
# B's notify polls the action after the IP moved: let it finish before the twin goes (at most 15 s)
t=$(date +%s%N)
while [ {has_twin} = 1 ] && [ "$(ms $t)" -lt 15000 ]; do
  grep -q '"VIP routed here"' {tmp}/b-notify.log 2>/dev/null && break
  sleep 0.05
done
kill -TERM $bns                           # B's `timeout`, which passes it on to keepalived
[ {has_twin} = 0 ] || kill $twin
wait
true
"""
    done = subprocess.run(
        ["unshare", "-n", "bash", "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    return results(done.stdout), done


@pytest.mark.parametrize("provider", ["none", "hcloud"])
def test_backup_takes_over_when_the_master_dies(tmp_path: Path, token: str, provider: str) -> None:
    got, done = run_pair(tmp_path, provider, token)
    logs = "".join((tmp_path / f).read_text() for f in ("a.log", "b.log") if (tmp_path / f).exists())
    twin_out = (tmp_path / "twin.out").read_text() if (tmp_path / "twin.out").exists() else ""
    context = done.stdout + done.stderr + logs + twin_out
    before_a = parse((tmp_path / "a-before.prom").read_text(), "VI_1")
    before_b = parse((tmp_path / "b-before.prom").read_text(), "VI_1")
    assert (before_a.state, before_b.state) == (2, 1), context
    vip_ms, state_ms, fip_ms = (int(got[k]) for k in ("vip_ms", "state_ms", "fip_ms"))
    assert vip_ms >= 0 and state_ms >= 0, context
    # Detection is 3 x advert_int + skew (~0.8 s); CI runs this starved beside the lab deploy, so
    # it gets slack here: the 1.0 s target is checked by the lab drills, not by this test.
    assert vip_ms < 5000, context
    line = f"\n[{provider}] master SIGKILL -> VIP on B {vip_ms} ms, B metric MASTER {state_ms} ms"
    if provider == "hcloud":
        assert 0 <= fip_ms < 10_000, context
        entries = [json.loads(x) for x in (tmp_path / "b-notify.log").read_text().splitlines()]
        routed = [e for e in entries if e["msg"] == "VIP routed here"]
        assert routed, entries
        line += f", floating IP on B {fip_ms} ms (notify: {routed[-1]['seconds']:.2f} s in the API)"
    print(line)
