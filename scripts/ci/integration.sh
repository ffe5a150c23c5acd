#!/usr/bin/env bash
# Integration hook of the scripts component: proves scripts/lab.sh on real containers, then the
# molecule smoke scenario (the same recipe through molecule/shared).
#   - a run killed halfway and stale leftovers are cleaned up by the next 'up';
#   - a stopped host (engine or machine restarted) is booted again by 'up', its disk kept;
#   - all hosts run systemd 'running' at their fixed addresses, reach each other, the VIP is free;
#   - the generated inventory works with Ansible's docker connection;
#   - 'up' twice keeps the hosts; 'down' removes ours and nothing else.
# Uses its own lab "ci" on 172.30.60.0/24 so it never touches the lab "lab" or a scenario's.
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
help_from_header "$@"
cd "$REPO_ROOT"

export NGD_LAB=ci NGD_LAB_SUBNET=172.30.60.0/24
LAB_SH="$REPO_ROOT/scripts/lab.sh"
PREFIX=172.30.60
declare -A EXPECTED_IP=([gw-a]=$PREFIX.11 [gw-b]=$PREFIX.12 [mon]=$PREFIX.20
  [collector]=$PREFIX.30 [sim]=$PREFIX.40)
declare -a TIMINGS=()
timed() {  # timed LABEL CMD...: run CMD, record its duration
  local label="$1" t=$SECONDS
  shift
  local rc=0
  "$@" || rc=$?
  TIMINGS+=("$(printf '%-34s %5ds%s' "$label" "$((SECONDS - t))" "${rc/#0/}")")
  return "$rc"
}
fail() { die "lab check failed: $*"; }

ensure_docker
BYSTANDER_NET=ngd-ci-bystander BYSTANDER_CTR=ngd-ci-bystander OTHER_LAB_CTR=ngd-ci2-gw-a
cleanup() {
  "$DOCKER" rm -f "$BYSTANDER_CTR" "$OTHER_LAB_CTR" >/dev/null 2>&1 || true
  "$DOCKER" network rm "$BYSTANDER_NET" >/dev/null 2>&1 || true
  "$LAB_SH" down >/dev/null 2>&1 || true
}
trap cleanup EXIT

timed "image (build if recipe changed)" "$LAB_SH" image
IMAGE=$("$LAB_SH" image)

# --- things that are not ours (or not this lab's): 'down' must leave them alone ------------------
"$DOCKER" network create --subnet 172.30.61.0/24 "$BYSTANDER_NET" >/dev/null
"$DOCKER" create --name "$BYSTANDER_CTR" "$IMAGE" sleep 1 >/dev/null
"$DOCKER" create --name "$OTHER_LAB_CTR" --label io.nanogridata.lab=ci2 "$IMAGE" sleep 1 >/dev/null

# --- leftovers of a killed run ------------------------------------------------------------------
"$LAB_SH" down >/dev/null
log "killing an 'up' halfway (SIGKILL to its process group once its first host exists)"
# Not a fixed delay: on an idle machine 'up' can finish within seconds.
setsid "$LAB_SH" up >/dev/null 2>&1 &
up_pid=$!
for _ in $(seq 1 1200); do
  [[ -n "$("$DOCKER" ps -aq --filter label=io.nanogridata.lab=ci)" ]] && break
  kill -0 "$up_pid" 2>/dev/null || break
  sleep 0.05
done
kill -KILL -- "-$up_pid" 2>/dev/null || fail "'up' finished before it could be killed"
wait "$up_pid" 2>/dev/null || true
"$DOCKER" create --name ngd-ci-ghost --label io.nanogridata.lab=ci --label io.nanogridata.host=ghost \
  "$IMAGE" >/dev/null
timed "lab up (after a killed run)" "$LAB_SH" up
[[ -z "$("$DOCKER" ps -aq --filter name='^/ngd-ci-ghost$')" ]] || fail "stale container ngd-ci-ghost survived 'up'"

# --- a stopped host (the Docker engine or the machine restarted) boots again, its disk kept ------
"$LAB_SH" shell mon sh -c 'echo kept >/var/tmp/ngd-ci-reboot-marker' </dev/null
"$DOCKER" kill ngd-ci-mon >/dev/null
timed "lab up (a host was stopped)" "$LAB_SH" up
[[ "$("$LAB_SH" shell mon cat /var/tmp/ngd-ci-reboot-marker </dev/null)" == kept ]] \
  || fail "the stopped host mon was replaced instead of booted again (what was deployed on it is lost)"

# --- status: every host running, fixed address, systemd running ---------------------------------
status=$("$LAB_SH" status)
printf '%s\n' "$status"
for host in "${!EXPECTED_IP[@]}"; do
  grep -Eq "^ngd-ci-$host +running +${EXPECTED_IP[$host]//./\\.} +running$" <<<"$status" \
    || fail "status does not show ngd-ci-$host running at ${EXPECTED_IP[$host]} with systemd running"
  [[ "$("$LAB_SH" ip "$host")" == "${EXPECTED_IP[$host]}" ]] || fail "lab.sh ip $host is not ${EXPECTED_IP[$host]}"
done

# --- the network: hosts reach each other by name; nobody holds the VIP --------------------------
for host in gw-b mon collector sim; do
  "$LAB_SH" shell gw-a ping -c 1 -W 2 "$host" >/dev/null || fail "gw-a cannot reach $host"
done
"$DOCKER" network inspect -f '{{range .Containers}}{{.IPv4Address}} {{end}}' ngd-ci | grep -q "$PREFIX\.100/" \
  && fail "a container holds the VIP $PREFIX.100"
"$LAB_SH" shell gw-a ping -c 1 -W 1 "$PREFIX.100" >/dev/null 2>&1 && fail "the VIP $PREFIX.100 answers before keepalived exists"

# --- the inventory: contract groups, Ansible reaches every host through it ----------------------
inventory=.lab/ci/hosts.yml
[[ -f "$inventory" ]] || fail "$inventory was not written"
groups_json=$(ansible-inventory -i "$inventory" --list)
python3 - "$groups_json" <<'PY' || fail "inventory does not follow docs' inventory contract"
import json, sys
inv = json.loads(sys.argv[1])
want = {"gateways": ["gw-a", "gw-b"], "monitoring": ["mon"], "collectors": ["collector"], "devices": ["sim"]}
for group, hosts in want.items():
    assert sorted(inv[group]["hosts"]) == sorted(hosts), (group, inv[group])
hv = inv["_meta"]["hostvars"]
assert hv["gw-a"]["ansible_host"] == "ngd-ci-gw-a" and hv["gw-a"]["keepalived_priority"] == 150
assert hv["gw-b"]["keepalived_priority"] == 100
assert hv["mon"]["ngd_private_ip"] == "172.30.60.20"
assert hv["sim"]["ngd_vip"] == "172.30.60.100" and hv["sim"]["ngd_vip_provider"] == "none"
assert hv["collector"]["ansible_connection"] == "community.docker.docker"
PY
timed "ansible ping through the inventory" ansible -i "$inventory" all -m ansible.builtin.ping >/dev/null \
  || fail "ansible cannot reach the lab through $inventory"
[[ -s .lab/ci/vault-password ]] || fail "no throw-away vault password in .lab/ci/"

# --- 'up' twice keeps the hosts ----------------------------------------------------------------
before=$("$DOCKER" ps -q --filter label=io.nanogridata.lab=ci --no-trunc | sort)
timed "lab up again (nothing to do)" "$LAB_SH" up
after=$("$DOCKER" ps -q --filter label=io.nanogridata.lab=ci --no-trunc | sort)
[[ "$before" == "$after" ]] || fail "a second 'up' replaced running hosts"

# --- down removes ours only -------------------------------------------------------------------
timed "lab down" "$LAB_SH" down
[[ -z "$("$DOCKER" ps -aq --filter label=io.nanogridata.lab=ci)" ]] || fail "containers of lab ci survived 'down'"
"$DOCKER" network inspect ngd-ci >/dev/null 2>&1 && fail "network ngd-ci survived 'down'"
[[ ! -e .lab/ci ]] || fail ".lab/ci survived 'down'"
"$DOCKER" inspect "$BYSTANDER_CTR" "$OTHER_LAB_CTR" >/dev/null 2>&1 || fail "'down' removed a container that is not its own"
"$DOCKER" network inspect "$BYSTANDER_NET" >/dev/null 2>&1 || fail "'down' removed a network that is not its own"
ok "lab.sh: killed-run cleanup, status, network, inventory, idempotent up, down: all good"

# --- the same recipe through molecule ---------------------------------------------------------
unset NGD_LAB NGD_LAB_SUBNET
timed "molecule test -s smoke" molecule test -s smoke || fail "molecule smoke scenario failed"

banner "scripts integration timings"
printf '%s\n' "${TIMINGS[@]}"
