"""The real keepalived binary with notify.py, in a private network namespace (`unshare -n`) so
nothing touches the host's interfaces: `keepalived -t` accepts the config, refuses scripts that
others may write (enable_script_security), and a running keepalived really calls notify.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import hcloud
import pytest

from conftest import FIP_ID, GW_A, GW_B, KEEPALIVED_DIR, TWIN_SRC
from ngd_vip.metrics import parse

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
# Inside the namespace: a veth pair (dummy interfaces need a kernel module the sandbox may lack).
NETNS_SETUP = (
    "ip link set lo up && ip link add ngd0 type veth peer name ngd1 && ip link set ngd0 up && "
    "ip link set ngd1 up && ip addr add 10.253.53.11/24 dev ngd0"
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unshare -n and keepalived need root")


def install(tmp_path: Path) -> Path:
    """Lay out the script as the Ansible role must: root-owned, 0755 dirs and script, 0644 modules."""
    lib = tmp_path / "lib"
    shutil.copytree(KEEPALIVED_DIR / "ngd_vip", lib / "ngd_vip", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(KEEPALIVED_DIR / "notify.py", lib / "notify.py")
    for path in [lib, lib / "ngd_vip"]:
        path.chmod(0o755)
    for module in (lib / "ngd_vip").iterdir():
        module.chmod(0o644)
    (lib / "notify.py").chmod(0o755)
    tmp_path.chmod(0o755)
    return lib


def render_conf(tmp_path: Path, notify_cmd: str, vip: str = "10.253.53.100/24") -> Path:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(f"""global_defs {{
  vrrp_version 3
  enable_script_security
  script_user root
}}
vrrp_script chk_vip {{
  script "{notify_cmd} reconcile --instance VI_1"
  interval 1
  timeout 20
  weight 0
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface ngd0
  virtual_router_id 53
  priority 100
  advert_int 0.2
  virtual_ipaddress {{
    {vip}
  }}
  track_script {{
    chk_vip
  }}
  notify "{notify_cmd}"
}}
""")
    return conf


def netns(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "-n", "bash", "-c", f"set -eu; {NETNS_SETUP}; {script}"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def config_test(conf: Path) -> subprocess.CompletedProcess[str]:
    return netns(f"{KEEPALIVED} -t -f {conf} 2>&1")


def test_keepalived_accepts_the_config(tmp_path: Path) -> None:
    lib = install(tmp_path)
    (tmp_path / "vip.toml").write_text(f'provider = "none"\nmetrics_dir = "{tmp_path / "textfile"}"\n')
    conf = render_conf(tmp_path, f"{lib}/notify.py --config {tmp_path}/vip.toml")
    result = config_test(conf)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("writable", ["script", "directory"])
def test_keepalived_refuses_a_script_others_can_write(tmp_path: Path, writable: str) -> None:
    lib = install(tmp_path)
    conf = render_conf(tmp_path, f"{lib}/notify.py --config {tmp_path}/vip.toml")
    target = lib / "notify.py" if writable == "script" else lib
    target.chmod(target.stat().st_mode | 0o002)
    result = config_test(conf)
    assert result.returncode != 0
    assert "insecure" in result.stdout


def run_daemon(
    tmp_path: Path,
    conf: Path,
    before: str = "",
    after: str = "",
    env: str = "",
) -> subprocess.CompletedProcess[str]:
    """Start keepalived (VRRP only, foreground), wait for MASTER in the metrics file, stop it."""
    prom = tmp_path / "textfile" / "keepalived_VI_1.prom"
    script = f"""
{before}
start=$(date +%s%N)
{env} NGD_VIP_LOG_FILE={tmp_path}/notify.log timeout 60 \
  {KEEPALIVED} -n -l -D -P -f {conf} -p {tmp_path}/k.pid -r {tmp_path}/vrrp.pid \
  > {tmp_path}/keepalived.log 2>&1 &
kpid=$!
for _ in $(seq 1 300); do
  grep -q 'keepalived_vrrp_state{{instance="VI_1"}} 2' {prom} 2>/dev/null && break
  sleep 0.05
done
echo "RESULT master_ms=$(( ($(date +%s%N) - start) / 1000000 ))"
{after}
echo "RESULT addrs=$(ip -o -4 addr show dev ngd0 | awk '{{print $4}}' | sort | tr '\\n' ,)"
cp {prom} {tmp_path}/while-master.prom
kill -TERM $kpid
wait $kpid || true
"""
    return netns(script, timeout=90)


def results(out: str) -> dict[str, str]:
    pairs = [
        line.removeprefix("RESULT ").split("=", 1) for line in out.splitlines() if line.startswith("RESULT ")
    ]
    return {k: v for k, v in pairs}


def test_running_keepalived_calls_notify(tmp_path: Path) -> None:
    lib = install(tmp_path)
    (tmp_path / "vip.toml").write_text(f'provider = "none"\nmetrics_dir = "{tmp_path / "textfile"}"\n')
    conf = render_conf(tmp_path, f"{lib}/notify.py --config {tmp_path}/vip.toml")
    done = run_daemon(tmp_path, conf)
    log = (tmp_path / "keepalived.log").read_text()
    assert done.returncode == 0, done.stdout + done.stderr + log
    got = results(done.stdout)
    assert "10.253.53.100/24" in got["addrs"], log  # keepalived itself added the VIP (provider none)
    while_master = parse((tmp_path / "while-master.prom").read_text(), "VI_1")
    assert while_master.state == 2
    final = parse((tmp_path / "textfile" / "keepalived_VI_1.prom").read_text(), "VI_1")
    # BACKUP at start, MASTER after the advert timeout, STOP at shutdown
    assert (final.state, final.transitions) == (0, 3), log


def test_running_keepalived_moves_the_hcloud_floating_ip(tmp_path: Path, token: str) -> None:
    """keepalived -> notify.py -> hcloud library -> twin, all inside the namespace. The twin
    listens on the namespace's own loopback; `ip addr replace` acts on the namespace's ngd0."""
    lib = install(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    port = 18080  # free by construction: the namespace is new
    (tmp_path / "vip.toml").write_text(f"""provider = "hcloud"
metrics_dir = "{tmp_path / "textfile"}"
vip = "198.51.100.7"
vip_prefix = 32
interface = "ngd0"
[hcloud]
token_file = "{token_file}"
floating_ip_id = {FIP_ID}
server_id = {GW_A}
endpoint = "http://127.0.0.1:{port}/v1"
deadline_seconds = 15
""")
    # Production runs notify.py on /usr/bin/python3 with Debian's python3-hcloud (ci/unit.sh installs
    # it). Without that package, fall back to this test's Python: keepalived resolves a symlinked
    # interpreter to its real path (a venv is lost that way), hence realpath + PYTHONPATH, which
    # keepalived passes on to its scripts.
    debian = subprocess.run(["/usr/bin/python3", "-c", "import hcloud"], capture_output=True, check=False)
    if debian.returncode == 0:
        python, env = "/usr/bin/python3", ""
    else:
        python = os.path.realpath(sys.executable)
        env = f"PYTHONPATH={Path(hcloud.__file__).resolve().parents[1]}"
    conf = render_conf(tmp_path, f"{python} {lib}/notify.py --config {tmp_path}/vip.toml")
    twin_cmd = (
        f"exec env PYTHONPATH={TWIN_SRC} timeout 120 {sys.executable} -m hcloud_twin"
        f" --token-file {token_file} --port {port} --server {GW_A}=gw-a --server {GW_B}=gw-b"
        f" --floating-ip {FIP_ID}=198.51.100.7@{GW_B} --action-seconds 0.3"
    )
    before = f"""
({twin_cmd}) > {tmp_path}/twin.out 2>&1 &
twin=$!                                   # the twin (exec; timeout bounds it if we never get to kill it)
for _ in $(seq 1 100); do grep -q endpoint {tmp_path}/twin.out 2>/dev/null && break; sleep 0.05; done
"""
    query = (
        "import json,urllib.request as u;"
        f" r=u.Request('http://127.0.0.1:{port}/v1/floating_ips/{FIP_ID}',"
        f" headers={{'Authorization': 'Bearer {token}'}});"
        " print(json.load(u.urlopen(r))['floating_ip']['server'])"
    )
    after = f"""
for _ in $(seq 1 100); do
  [ "$({sys.executable} -c "{query}")" = "{GW_A}" ] && break
  sleep 0.05
done
echo "RESULT assigned_ms=$(( ($(date +%s%N) - start) / 1000000 ))"
echo "RESULT server=$({sys.executable} -c "{query}")"
# notify.py configures the address on the interface after the API confirmed the assignment
for _ in $(seq 1 100); do
  ip -o -4 addr show dev ngd0 | grep -q ' 198.51.100.7/32 ' && break
  sleep 0.05
done
"""
    done = run_daemon(tmp_path, conf, before=before, after=after + "\nkill $twin", env=env)
    log = (tmp_path / "keepalived.log").read_text()
    assert done.returncode == 0, done.stdout + done.stderr + log
    got = results(done.stdout)
    assert got["server"] == str(GW_A), done.stdout + log
    assert "198.51.100.7/32" in got["addrs"], done.stdout + log  # notify.py's ip addr replace
    entries = [json.loads(line) for line in (tmp_path / "notify.log").read_text().splitlines()]
    master_ts = next(e["ts"] for e in entries if e.get("state") == "MASTER")
    routed_ts = next(e["ts"] for e in entries if e["msg"] == "VIP routed here")
    print(
        f"\nnotify on {python}: MASTER notify -> floating IP routed here {routed_ts - master_ts:.2f} s"
        f" (twin action 0.3 s); keepalived start -> assigned {got['assigned_ms']} ms"
    )
