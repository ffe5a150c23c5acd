#!/usr/bin/env bash
# The production rehearsal: `./scripts/deploy.sh production`, whole, against the local Hetzner Cloud
# twin (hcloud_twin/, host backend: every server is a lab container with sshd, a public address and
# the cloud firewall enforced). Only the API endpoint and the operator's network differ from a real
# deploy; deploy.sh has no rehearsal mode.
#
#   1. leftovers of an earlier (killed) run: containers and networks labelled with this lab, removed
#   2. an operator's checkout: a copy of this one (tracked and unignored files), committed
#   3. the twin (--docker-hosts LAB --public-subnet CIDR); its endpoint must be loopback or on the
#      network this script had it create: a misconfigured run never reaches api.hetzner.cloud
#   4. README "Production in five steps", steps 1-2, as a user does them: the tfvars from the example
#      (key, admin and device networks), the vault from its example (encrypted), the runbook URL;
#      the vault's pager, dead-man and chat URLs point at a webhook receiver that stands for them
#      (scripts/ops/webhook_receiver.py on the operator's address, recording what arrives)
#   5. deploy.sh production --yes, killed (SIGKILL to everything it started) at a random moment of
#      tofu apply, its infrastructure step or site.yml (NGD_REHEARSAL_KILL_AFTER=ANCHOR+SECONDS
#      pins it; the seed and where it hit are printed), then run again: it must complete whatever
#      the kill left behind. tofu init/plan/apply, bridge, SSH, site.yml, testinfra, probe, the
#      Alertmanager gate
#   6. deploy.sh production --yes again: converges, nothing changes (tofu plan clean, 0 changed tasks)
#      then every runbook command (scripts/ops/runbook_check.py --ssh) on the production hosts
#   With --releases (off in CI: the lab deploy hook, scripts/ci/integration-deploy.sh, rolls a new
#   release out, rolls back and rolls back again under traffic with the same scripts):
#   7. a new release (the operator's next commit): deploy.sh production rolls it out
#   8. rollback.sh production: back to the first release
#   9. rollback.sh production again: stays on it (the bad release is not re-deployed)
#   Unless --no-drill:
#   D. an Alertmanager silence of ClockNotSynchronised (amtool on the monitoring host, with a comment
#      saying why), as an operator silences a known false alarm: the twin's hosts are containers
#      sharing this machine's kernel clock, which no NTP daemon disciplines here, so node_exporter
#      rightly reports it unsynchronised (a real Hetzner server runs chrony; this is the one alert
#      the twin raises that production would not). Then the operator's key in an ssh-agent (the
#      drill's SSH is pyinfra's, which reads no ssh config) and README step 5: drill.sh
#      keepalived-stop --env production --yes, whose report must show every target met.
#   P. the pager: the dead-man receiver has the Watchdog heartbeat; a real critical condition on
#      the collector (its node_exporter and VictoriaMetrics stopped: Prometheus can scrape nothing
#      there, NodeDown) must reach the pager receiver firing, with env/instance labels and a
#      runbook_url of ngd_runbook_base_url plus an anchor docs/runbooks/alerts.md has; then healed,
#      no critical alert may remain active (the deploy gate's question). Its time is mostly
#      NodeDown's `for: 1m`. The resolved notification comes after the pager route's
#      group_interval (5m): it is asked for after 9b, which runs meanwhile.
#   After 5 and 7-9, every gateway's running process must report the expected release
#   (nanogridata_build_info on its /metrics, read over SSH): exit codes alone prove nothing.
#   9b. disaster recovery (scripts/ops/rehearsal_dr.sh): backup.sh production (off-host copy; the
#      secrets encrypted to the operator's age key, set up as README says), gw-b's server lost,
#      docs/runbooks/disaster-recovery.md (tofu apply -replace, deploy.sh, restore.sh --identity):
#      the RTO printed; frames only gw-b held, its replay state and its secrets are back
#  10. decommission as terraform/README.md says: delete_protection = false, apply, tofu destroy;
#      the twin must be empty
# Prints per-step timings. The twin and its hosts go on exit (also after a failure); the copy is
# kept on failure (its logs/) unless --clean.
#
# Usage: scripts/rehearsal.sh [--lab NAME] [--private-subnet CIDR] [--public-subnet CIDR] [--clean]
#                             [--releases] [--no-drill]
#        (--no-drill skips D and P; --drill, their default, is still accepted)
#        scripts/rehearsal.sh --cleanup   (only step 1: remove a killed run's containers/networks)
# Environment: NGD_REHEARSAL_LAB (reh), NGD_REHEARSAL_PRIVATE_SUBNET (172.30.74.0/24),
# NGD_REHEARSAL_PUBLIC_SUBNET (172.30.75.0/24).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
help_from_header "$@"

LAB="${NGD_REHEARSAL_LAB:-reh}"
PRIVATE_SUBNET="${NGD_REHEARSAL_PRIVATE_SUBNET:-172.30.74.0/24}"
PUBLIC_SUBNET="${NGD_REHEARSAL_PUBLIC_SUBNET:-172.30.75.0/24}"
CLEANUP_ONLY=0 KEEP_ON_FAILURE=1 RELEASES=0 DRILL=1
while (($#)); do
  case "$1" in
    --lab) LAB="${2:?--lab needs a name}"; shift 2 ;;
    --private-subnet) PRIVATE_SUBNET="${2:?--private-subnet needs a /24}"; shift 2 ;;
    --public-subnet) PUBLIC_SUBNET="${2:?--public-subnet needs a /24}"; shift 2 ;;
    --cleanup) CLEANUP_ONLY=1; shift ;;
    --clean) KEEP_ON_FAILURE=0; shift ;;
    --releases) RELEASES=1; shift ;;
    --drill) DRILL=1; shift ;;
    --no-drill) DRILL=0; shift ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ "$LAB" =~ ^[a-z][a-z0-9-]{0,15}$ ]] || die "--lab '$LAB': lowercase letters, digits and '-', at most 16"
for cidr in "$PRIVATE_SUBNET" "$PUBLIC_SUBNET"; do
  [[ "$cidr" =~ ^([0-9]+\.){3}0/24$ ]] || die "subnet '$cidr' must be a /24 such as 172.30.74.0/24"
done
LABEL="io.nanogridata.lab=$LAB"

# The real API must be unreachable from here whatever the caller exported: every HCLOUD_* goes.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^HCLOUD_' || true)

declare -a TIMINGS=()
T0=$SECONDS
STEP_LABEL="" STEP_T0=0
timed() {  # timed LABEL CMD...: run CMD, record its duration
  # CMD runs as a plain statement, so set -e applies inside it (within `cmd || ...` it would not):
  # any failure ends the run, and cleanup records the step as failed.
  STEP_LABEL=$1 STEP_T0=$SECONDS
  shift
  log "== $STEP_LABEL"
  "$@"
  TIMINGS+=("$(printf '%-52s %5ds' "$STEP_LABEL" "$((SECONDS - STEP_T0))")")
  STEP_LABEL=""
}
print_timings() {
  local rc=$1
  [[ -z "$STEP_LABEL" ]] || TIMINGS+=("$(printf '%-52s %5ds  FAILED (%s)' "$STEP_LABEL" "$((SECONDS - STEP_T0))" "$rc")")
  ((${#TIMINGS[@]})) || return 0
  banner "rehearsal timings (lab $LAB)"
  printf '  %s\n' "${TIMINGS[@]}"
  printf '  %-52s %5ds\n' total "$((SECONDS - T0))"
}

remove_leftovers() {  # containers and networks of this lab: ours by label, nothing else
  local ids=()
  mapfile -t ids < <(docker ps -aq --filter "label=$LABEL")
  ((${#ids[@]} == 0)) || docker rm -f "${ids[@]}" >/dev/null
  mapfile -t ids < <(docker network ls -q --filter "label=$LABEL")
  ((${#ids[@]} == 0)) || docker network rm "${ids[@]}" >/dev/null
}

ensure_docker
if ((CLEANUP_ONLY)); then
  remove_leftovers
  ok "no container or network labelled $LABEL left"
  exit 0
fi
require_cmd ssh "install openssh-client"
require_cmd ssh-keygen "install openssh-client"
# shellcheck source=scripts/lib/toolenv.sh
source "$REPO_ROOT/scripts/lib/toolenv.sh"
toolenv_activate
require_cmd ansible-vault "the tool venv should provide it"
require_cmd age-keygen "apt-get install age (README: backups encrypt the secrets with age)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ngd-rehearsal-$LAB.XXXXXX")
TWIN_PID=""
diagnose() {  # after a failure: every host's failed units and journal, kept with the run's files
  local name
  mkdir -p "$WORK/diag"
  for name in $(docker ps --filter "label=$LABEL" --format '{{.Names}}'); do
    docker exec "$name" sh -c 'systemctl --failed --no-legend; journalctl -n 400 --no-pager' \
      >"$WORK/diag/$name.log" 2>&1 || true
    docker exec "$name" systemctl --failed --no-legend 2>/dev/null | awk '{print $1}' | grep -v '^$' \
      | while read -r unit; do
        warn "$name: $unit failed:"
        docker exec "$name" journalctl -u "$unit" -n 25 --no-pager >&2 || true
      done
  done
}
cleanup() {
  local rc=$?
  ((rc == 0)) || diagnose || true
  if [[ -n "$TWIN_PID" ]] && kill -0 "$TWIN_PID" 2>/dev/null; then
    kill -TERM "$TWIN_PID" 2>/dev/null || true
    # The twin removes its hosts on SIGTERM; wait for that, then make sure by label.
    for _ in $(seq 120); do kill -0 "$TWIN_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$TWIN_PID" 2>/dev/null || true
  fi
  [[ -z "${SSH_AGENT_PID:-}" ]] || kill "$SSH_AGENT_PID" 2>/dev/null || true
  [[ -z "${RECEIVER_PID:-}" ]] || kill "$RECEIVER_PID" 2>/dev/null || true
  remove_leftovers || true
  print_timings "$rc"
  if ((rc == 0 || KEEP_ON_FAILURE == 0)); then
    rm -rf "$WORK"
  else
    warn "rehearsal FAILED (exit $rc): the operator's checkout and its logs are kept in $WORK"
  fi
  return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. leftovers ---------------------------------------------------------------------------------
timed "leftovers of an earlier run removed" remove_leftovers

# --- 2. the operator's checkout ---------------------------------------------------------------
OP="$WORK/repo"
checkout() {
  mkdir -p "$OP"
  (cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -C "$OP" -xf -
  git -C "$OP" init -q
  git -C "$OP" -c user.name=operator -c user.email=operator@example.invalid add -A
  git -C "$OP" -c user.name=operator -c user.email=operator@example.invalid commit -q -m "the operator's checkout"
}
timed "operator's checkout (copy, committed)" checkout

# --- 3. the twin ------------------------------------------------------------------------------
TOKEN_FILE="$WORK/hcloud-token"
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$TOKEN_FILE"  # the provider wants 64 characters
chmod 600 "$TOKEN_FILE"
start_twin() {
  PYTHONPATH="$REPO_ROOT/hcloud_twin/src" python3 -m hcloud_twin --token-file "$TOKEN_FILE" \
    --docker-hosts "$LAB" --public-subnet "$PUBLIC_SUBNET" --state-file "$WORK/twin-state.json" \
    >"$WORK/twin.out" 2>"$WORK/twin.err" &
  TWIN_PID=$!
  local deadline=$((SECONDS + 900))  # the first run builds the host image
  until grep -q '"endpoint"' "$WORK/twin.out" 2>/dev/null; do
    kill -0 "$TWIN_PID" 2>/dev/null || { cat "$WORK/twin.err" >&2; die "the twin exited before listening"; }
    ((SECONDS < deadline)) || { cat "$WORK/twin.err" >&2; die "the twin did not listen within 900 s"; }
    sleep 0.5
  done
  ENDPOINT=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["endpoint"])' "$WORK/twin.out")
}
timed "twin started (host backend)" start_twin
# Before anything talks to it: the endpoint is loopback, or the docker host's address on the public
# network this script had the twin create (labelled with this lab).
python3 - "$ENDPOINT" "$PUBLIC_SUBNET" <<'PY' || die "refusing the endpoint $ENDPOINT: not loopback, not our own network"
import ipaddress, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
addr = ipaddress.ip_address(url.hostname or "")
if url.scheme != "http" or not (addr.is_loopback or addr in ipaddress.ip_network(sys.argv[2])):
    sys.exit(1)
PY
[[ "$(docker network inspect -f '{{index .Labels "io.nanogridata.lab"}}' "ngd-$LAB-public" 2>/dev/null)" == "$LAB" ]] \
  || die "the twin's public network ngd-$LAB-public is not labelled $LABEL: not ours, refusing"
OPERATOR_IP=$(python3 -c 'import ipaddress,sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "$PUBLIC_SUBNET")
export HCLOUD_ENDPOINT="$ENDPOINT"
HCLOUD_TOKEN=$(cat "$TOKEN_FILE")
export HCLOUD_TOKEN
ok "twin at $HCLOUD_ENDPOINT (operator address on the public side: $OPERATOR_IP)"

# The operator's SSH: this run's key (ssh reads ~/.ssh of the passwd entry whatever HOME says, so a
# wrapper adds -F with this run's config). Host keys and waiting for the new hosts are deploy.sh's
# own (known_hosts from OpenTofu, wait_hosts.py): nothing here relaxes or retries them.
ssh-keygen -q -t ed25519 -N "" -C "ops@rehearsal" -f "$WORK/id_ed25519"
mkdir -p "$WORK/bin"
cat >"$WORK/ssh_config" <<EOF
Host *
  IdentityFile $WORK/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $WORK/known_hosts
EOF
real_ssh=$(command -v ssh)
printf '#!/bin/sh\nexec %s -F %s "$@"\n' "$real_ssh" "$WORK/ssh_config" >"$WORK/bin/ssh"
chmod +x "$WORK/bin/ssh"
export PATH="$WORK/bin:$PATH"

# --- 4. README, Production in five steps, steps 1 and 2 ----------------------------------------
# The pager, the dead man's switch and the chat: one webhook receiver on the operator's address (any
# free port), recording every POST in $WORK/webhooks.jsonl. Nobody real is paged from here.
RECEIVER_PID="" RECEIVER_URL="" WEBHOOKS="$WORK/webhooks.jsonl"
RECEIVER="$REPO_ROOT/scripts/ops/webhook_receiver.py"
start_receiver() {
  python3 "$RECEIVER" serve --listen "$OPERATOR_IP:0" --record "$WEBHOOKS" \
    >"$WORK/receiver.out" 2>"$WORK/receiver.err" &
  RECEIVER_PID=$!
  local deadline=$((SECONDS + 60))
  until grep -q '"url"' "$WORK/receiver.out" 2>/dev/null; do
    kill -0 "$RECEIVER_PID" 2>/dev/null || { cat "$WORK/receiver.err" >&2; die "the webhook receiver exited"; }
    ((SECONDS < deadline)) || die "the webhook receiver did not listen within 60 s"
    sleep 0.2
  done
  RECEIVER_URL=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["url"])' "$WORK/receiver.out")
}
start_receiver
ok "pager, dead man's switch and chat: $RECEIVER_URL/{pager,deadman,chat} (recorded in $WEBHOOKS)"
TFDIR="$OP/terraform/environments/production"
GV="$OP/ansible/inventories/production/group_vars/all"
VAULT_PASS="$WORK/vault-password"
AGE_KEY="$WORK/age-key.txt"  # the operator's backup key (README: ngd_backup_age_recipients)
readme_steps() {
  cp "$TFDIR/production.tfvars.example" "$TFDIR/production.tfvars"
  python3 - "$TFDIR/production.tfvars" "$(cat "$WORK/id_ed25519.pub")" "$OPERATOR_IP/32" "$PRIVATE_SUBNET" <<'PY'
import re, sys
path, key, admin, private = sys.argv[1:]
text = open(path).read()
for pattern, value in (
    (r'(?m)^(\s*ops\s*=\s*)"ssh-ed25519 [^"]*"', rf'\1"{key}"'),
    (r'(?m)^(admin_cidrs\s*=\s*).*$', rf'\1["{admin}"]'),
):
    text, n = re.subn(pattern, value, text)
    if n != 1:
        sys.exit(f"production.tfvars.example changed: no line for {pattern}")
# The docker host's own networks must not overlap the project's private network.
net = private.rsplit(".", 2)[0]
text += f'private_network_cidr = "{net}.0.0/16"\nprivate_subnet_cidr  = "{private}"\n'
open(path, "w").write(text)
PY
  printf '%s\n' "$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')" >"$VAULT_PASS"
  chmod 600 "$VAULT_PASS"
  # Every secret placeholder gets its own `nanogridata-gateway keygen`; receivers: the webhook
  # receiver on the docker host's public address (our own network).
  python3 - "$GV/vault.yml.example" "$GV/vault.yml" "$HCLOUD_TOKEN" \
    "$RECEIVER_URL/pager" "$RECEIVER_URL/deadman" "$RECEIVER_URL/chat" <<'PY'
import subprocess, sys
src, dst, token, pager, deadman, chat = sys.argv[1:]
text = open(src).read()
placeholder = "REPLACE-WITH-64-HEX-CHARACTERS"
if placeholder not in text:
    sys.exit(f"vault.yml.example changed: no {placeholder}")
while placeholder in text:
    secret = subprocess.run(["nanogridata-gateway", "keygen"], capture_output=True, text=True, check=True).stdout.strip()
    text = text.replace(placeholder, secret, 1)
subs = {
    'vault_hcloud_token: ""': f'vault_hcloud_token: "{token}"',
    'vault_alert_pager_webhook_url: ""': f'vault_alert_pager_webhook_url: "{pager}"',
    'vault_alert_deadman_url: ""': f'vault_alert_deadman_url: "{deadman}"',
    'vault_alert_chat_webhook_url: ""': f'vault_alert_chat_webhook_url: "{chat}"',
}
for old, new in subs.items():
    if old not in text:
        sys.exit(f"vault.yml.example changed: no {old!r}")
    text = text.replace(old, new)
open(dst, "w").write(text)
PY
  ansible-vault encrypt --vault-password-file "$VAULT_PASS" "$GV/vault.yml" >/dev/null
  sed -i -E 's|^ngd_runbook_base_url: "".*|ngd_runbook_base_url: "https://git.example.com/ops/nanogridata/-/blob/main/docs/runbooks/alerts.md"|' "$GV/main.yml"
  grep -q '^ngd_runbook_base_url: "https' "$GV/main.yml" || die "main.yml changed: no empty ngd_runbook_base_url line"
  # Beyond README, for the twin only: its "internet" has no NTP pool and no Grafana apt repository
  # (and tests reach nothing outside our own networks). Nothing else differs.
  printf '%s\n' "" "# The rehearsal's hosts have no internet: no NTP pool, no Grafana repository." \
    "common_chrony_enabled: false" "grafana_install_package: false" >>"$GV/main.yml"
  # README: an age public key in ngd_backup_age_recipients, or the secrets stay out of backups;
  # the private key stays with the operator, never on a host.
  age-keygen -o "$AGE_KEY" 2>/dev/null
  printf '%s\n' "" "# Backups: the secrets in them are encrypted to the operator's age key." \
    "ngd_backup_age_recipients: [\"$(age-keygen -y "$AGE_KEY")\"]" >>"$GV/main.yml"
  # README: the settings and the encrypted vault are committed (deploy.sh deploys a clean tree).
  git -C "$OP" add "$GV/vault.yml" "$GV/main.yml"
  git -C "$OP" -c user.name=operator -c user.email=operator@example.invalid commit -q -m "production settings"
}
timed "README steps 1-2 (tfvars, vault, runbook URL)" readme_steps
export NGD_VAULT_PASSWORD_FILE="$VAULT_PASS"
[[ -z "$(git -C "$OP" status --porcelain)" ]] || { git -C "$OP" status --short >&2; die "README's steps leave the checkout unclean: deploy.sh would refuse it"; }

# --- 5-6. deploy, then deploy again ------------------------------------------------------------
deploy() { (cd "$OP" && ./scripts/deploy.sh production --yes); }
INV="$OP/ansible/inventories/production/hosts.yml"
port_of() {  # port_of KEY: a port of the operator's ansible/group_vars/all/ports.yml
  python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))[sys.argv[2]])' "$OP/ansible/group_vars/all/ports.yml" "$1"
}
ad_hoc() {  # ad_hoc PATTERN ARGS...: ansible ad-hoc over SSH with the inventory's host keys
  local pattern=$1
  shift
  (cd "$OP/ansible" && ANSIBLE_CONFIG="$OP/ansible/ansible.cfg" ANSIBLE_VAULT_PASSWORD_FILE="$VAULT_PASS" \
    ansible "$pattern" -i "$INV" "$@")
}
METRICS_PORT=$(port_of ngd_gateway_metrics_port)
AM_PORT=$(port_of ngd_alertmanager_port)
release_of() {  # release_of LOG: the release deploy.sh built ("release: X" in its build step)
  sed -nE 's/.*\] release: ([^ ]+)$/\1/p' "$1" | head -1
}
assert_running() {  # assert_running VERSION: every gateway's running process reports VERSION
  # nanogridata_build_info of the gateway's own /metrics, asked over SSH with the inventory's
  # host keys (what runs, not which release directory a symlink names).
  local out
  out=$(ad_hoc gateways -o -m ansible.builtin.command -a "python3 -c \"import urllib.request; \
print(urllib.request.urlopen('http://127.0.0.1:$METRICS_PORT/metrics', timeout=10).read().decode())\"" 2>&1) \
    || { printf '%s\n' "$out" >&2; warn "could not read the gateways' /metrics over SSH"; return 1; }
  python3 - "$1" "$out" <<'PY'
import re, sys
want, out = sys.argv[1], sys.argv[2]
seen = {}
for line in out.splitlines():
    host = re.match(r"^(\S+) \|", line)
    version = re.search(r'nanogridata_build_info\{[^}]*version="([^"]+)"', line)
    if host and version:
        seen[host.group(1)] = version.group(1)
print("running: " + ", ".join(f"{h} {v}" for h, v in sorted(seen.items())))
if len(seen) != 2 or set(seen.values()) != {want}:
    sys.exit(f"expected {want} running on both gateways, got {seen or 'no build_info'}")
PY
}
GOOD="" NEW=""
# The first deploy is killed (SIGKILL to every process it started: tofu, ansible-playbook and its
# workers, ssh and its master connections; what a lost operator session or a crashed workstation
# does) at a random moment where it hurts, one of: 0-3 s after tofu apply began creating resources
# ("apply"), 0-25 s into deploy.sh's step 2 (plan, apply, the inventory bridge, the SSH wait), or
# 0-180 s into step 4 (site.yml). Whatever it leaves behind (state, inventory, plan file, half-made
# releases, dpkg locks) must not stop the re-run. NGD_REHEARSAL_KILL_AFTER=ANCHOR+SECONDS pins it
# (apply+1, 2+7, 4+90; a plain SECONDS counts from deploy.sh's start).
KILL_AFTER="${NGD_REHEARSAL_KILL_AFTER:-}"
descendants() {  # descendants PID: PID and every process below it
  ps -eo pid=,ppid= | awk -v root="$1" '{ parent[$1] = $2 }
    END { for (p in parent) { q = p; n = 0; while (q != root && (q in parent) && n++ < 64) q = parent[q]; if (q == root) print p } }'
}
killed_deploy() {
  local seed anchor delay pid phase rc mark=""
  if [[ -z "$KILL_AFTER" ]]; then
    seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
    RANDOM=$seed
    case $((RANDOM % 3)) in
      0) anchor=apply delay=$((RANDOM % 4)) ;;
      1) anchor=2 delay=$((RANDOM % 26)) ;;
      *) anchor=4 delay=$((RANDOM % 181)) ;;
    esac
    log "kill at $anchor+${delay}s (random, seed $seed; NGD_REHEARSAL_KILL_AFTER=$anchor+$delay repeats it)"
  elif [[ "$KILL_AFTER" =~ ^(apply|[1-6])\+([0-9]+)$ ]]; then
    anchor=${BASH_REMATCH[1]} delay=${BASH_REMATCH[2]}
    log "kill at $anchor+${delay}s (NGD_REHEARSAL_KILL_AFTER)"
  elif [[ "$KILL_AFTER" =~ ^[0-9]+$ ]]; then
    anchor=start delay=$KILL_AFTER
    log "kill ${delay}s after deploy.sh started (NGD_REHEARSAL_KILL_AFTER)"
  else
    die "NGD_REHEARSAL_KILL_AFTER='$KILL_AFTER': ANCHOR+SECONDS (apply+1, 2+7, 4+90) or SECONDS"
  fi
  case $anchor in
    apply) mark=": Creating..." ;;
    start) mark="" ;;
    *) mark="[$anchor/6]" ;;
  esac
  # Its own session: the kill reaches every process it started and nothing of ours.
  (cd "$OP" && exec setsid ./scripts/deploy.sh production --yes) >"$WORK/killed.log" 2>&1 &
  pid=$!
  local t0=$SECONDS
  if [[ -n "$mark" ]]; then
    while kill -0 "$pid" 2>/dev/null && ! grep -qF -- "$mark" "$WORK/killed.log"; do sleep 0.2; done
    t0=$SECONDS
  fi
  while kill -0 "$pid" 2>/dev/null && ((SECONDS - t0 < delay)); do sleep 0.2; done
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" && rc=0 || rc=$?
    warn "the deploy ended (exit $rc) before the kill: nothing was killed (its output: $WORK/killed.log)"
    return 0
  fi
  # Where it stood: the step's banner, the last task, its last line.
  phase=$(grep -oE '\[[0-9]/6\] [a-z][a-z -]*' "$WORK/killed.log" | tail -1 || true)
  local task last pids=() more=() masters=() procs
  task=$(grep -oE 'TASK \[[^]]*\]' "$WORK/killed.log" | tail -1 || true)
  last=$(grep -v '^[[:space:]]*$' "$WORK/killed.log" | tail -1 | cut -c1-160 || true)
  # Every process below deploy.sh, whatever session it moved to (Ansible's workers start their
  # own), stopped first so that none forks past the kill...
  for _ in 1 2 3 4 5; do
    mapfile -t more < <(descendants "$pid" | grep -vxF -f <(printf '%s\n' "${pids[@]}" 0) || true)
    ((${#more[@]})) || break
    kill -STOP "${more[@]}" 2>/dev/null || true
    pids+=("${more[@]}")
  done
  # ...and ssh's master connections to this lab's hosts (ControlPersist: detached from the tree),
  # which a crashed workstation loses as well: those ssh processes that hold a connection to the
  # twin's public network, which only this run's deploy opened.
  mapfile -t masters < <(ss -Htnp state established dst "$PUBLIC_SUBNET" 2>/dev/null \
    | grep -oE '\("ssh",pid=[0-9]+' | grep -oE '[0-9]+$' | sort -u || true)
  procs=$(ps -o comm= -p "$(IFS=,; echo "${pids[*]}")" | sort | uniq -c | awk '{printf "%s%s ", $2, ($1 > 1 ? "x" $1 : "")}' || true)
  kill -KILL "${pids[@]}" "${masters[@]}" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 60)) all
  all=$(IFS=,; echo "${pids[*]} ${masters[*]}" | tr ' ' ',' | sed 's/,*$//')
  while ps -o pid= -p "$all" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "processes of the killed deploy still run 60 s after SIGKILL"
    sleep 0.5
  done
  procs+="+ ${#masters[@]} ssh master connection(s)"
  ok "deploy.sh production killed at $anchor+${delay}s, in ${phase:-preflight}${task:+, at $task} (processes: $procs)"
  log "its last line: $last"
}
timed "deploy.sh production (killed at a random moment)" killed_deploy
first_deploy() {
  deploy | tee "$WORK/first.log" || return 1
  GOOD=$(release_of "$WORK/first.log")
  [[ -n "$GOOD" ]] || { warn "no 'release:' line in the first deploy's output"; return 1; }
  assert_running "$GOOD"
}
timed "deploy.sh production (re-run after the kill)" first_deploy

tofu_env() { eval "$(bash "$OP/terraform/tools/install-tofu.sh" --print-env)"; }
second_deploy() {
  local out="$WORK/second.log"
  deploy | tee "$out"
  grep -q "no infrastructure change" "$out" || die "the second deploy changed the infrastructure"
  grep -Eq 'changed=0 ' "$out" || die "no play recap in the second deploy"
  if grep -E 'changed=[1-9]' "$out"; then die "the second deploy changed the hosts (above)"; fi
}
timed "deploy.sh production (again: nothing changes)" second_deploy

# --- 6b. the runbooks' commands, on the production hosts -----------------------------------------
# scripts/ops/runbook_check.py over SSH as Ansible connects (the inventory deploy.sh wrote, its
# known_hosts), Prometheus and Alertmanager through the SSH tunnel docs/runbooks/alerts.md tells
# the operator to open; the operator's tools the runbooks use (promtool, amtool, ping) installed.
runbook_commands() {
  # shellcheck source=prometheus/ci/lib.sh
  source "$REPO_ROOT/prometheus/ci/lib.sh"
  prom_tools
  ensure_apt iputils-ping
  (cd "$OP" && python3 scripts/ops/runbook_check.py --ssh --env production --inventory "$INV" \
    --prometheus-port "$(port_of ngd_prometheus_port)" --alertmanager-port "$AM_PORT") \
    | tee "$WORK/runbooks.log"
}
timed "runbook commands (docs/runbooks), over SSH" runbook_commands

# --- 7-9. a new release, rollback, rollback again ----------------------------------------------
rollout() {  # the operator's next commit is the next release: deploy.sh rolls it out
  git -C "$OP" -c user.name=operator -c user.email=operator@example.invalid commit -q --allow-empty \
    -m "the next release" || return 1
  deploy | tee "$WORK/rollout.log" || return 1
  NEW=$(release_of "$WORK/rollout.log")
  [[ -n "$NEW" && "$NEW" != "$GOOD" ]] || { warn "the new release '$NEW' is not a new version (was $GOOD)"; return 1; }
  grep -qF "rolling deploy $GOOD -> $NEW" "$WORK/rollout.log" || { warn "deploy.sh did not roll $GOOD -> $NEW out"; return 1; }
  assert_running "$NEW"
}
rollback() { (cd "$OP" && ./scripts/rollback.sh production --yes); }
first_rollback() {
  rollback | tee "$WORK/rollback.log" || return 1
  assert_running "$GOOD"
}
second_rollback() {  # PREVIOUS_RELEASE names the bad release now: following it would re-deploy it
  rollback | tee "$WORK/rollback2.log" || return 1
  grep -q "nothing to roll back" "$WORK/rollback2.log" || { warn "the second rollback did something (above)"; return 1; }
  assert_running "$GOOD"
}
if ((RELEASES)); then
  timed "deploy.sh production (a new release rolls out)" rollout
  timed "rollback.sh production (back to the good release)" first_rollback
  timed "rollback.sh production again (stays on it)" second_rollback
fi
drill() {  # README, Production in five steps, step 5
  if [[ -z "${SSH_AGENT_PID:-}" ]]; then
    eval "$(ssh-agent -s)" >/dev/null || return 1
    ssh-add -q "$WORK/id_ed25519" || return 1
  fi
  (cd "$OP" && ./scripts/drill.sh keepalived-stop --env production --yes) | tee "$WORK/drill.log" || return 1
  grep -q 'keepalived-stop' "$WORK/drill.log" || { warn "the drill printed no report"; return 1; }
}
silence_clock() {  # what an operator does with a known false alarm: silence it, saying why
  ad_hoc monitoring -o -m ansible.builtin.command -a "amtool --alertmanager.url=http://127.0.0.1:$AM_PORT \
silence add alertname=ClockNotSynchronised --duration=3h --author=rehearsal \
--comment='production rehearsal: the twin hosts are containers sharing the CI machine kernel clock, \
which no NTP daemon disciplines there; real servers run chrony'" | tee "$WORK/silence.log"
  grep -q 'CHANGED\|SUCCESS' "$WORK/silence.log" || { warn "amtool silence add failed (above)"; return 1; }
}
if ((DRILL)); then
  timed "Alertmanager silence: ClockNotSynchronised (twin)" silence_clock
  timed "drill.sh keepalived-stop --env production" drill
fi

# --- P. the pager: a real alert, delivered --------------------------------------------------------
received() {  # received PATH STATUS LABEL=VALUE...: wait until the receiver recorded that alert
  local path=$1 status=$2 label args=()
  shift 2
  for label in "$@"; do args+=(--label "$label"); done
  python3 "$RECEIVER" wait --record "$WEBHOOKS" --path "$path" --status "$status" --timeout 600 "${args[@]}"
}
collector_services() {  # collector_services stop|start: every scrape target on the collector
  ad_hoc collectors -o -m ansible.builtin.command -a "systemctl $1 prometheus-node-exporter victoria-metrics" \
    || { warn "could not $1 the collector's services"; return 1; }
}
PAGED_AT=0 PAGED_INSTANCE=""
pager() {
  local collector fired t0=$SECONDS
  received /deadman firing alertname=Watchdog env=production >/dev/null || return 1
  ok "dead man's switch: Watchdog heartbeat received"
  collector=$(ad_hoc collectors --list-hosts | awk 'NR > 1 {print $1; exit}')
  [[ -n "$collector" ]] || { warn "no host in the collectors group"; return 1; }
  log "stopping the scrape targets of $collector: NodeDown must page"
  collector_services stop
  if ! fired=$(received /pager firing alertname=NodeDown env=production "instance=$collector" severity=critical); then
    collector_services start || true
    return 1
  fi
  ok "paged after $((SECONDS - t0))s: $fired"
  PAGED_AT=$t0 PAGED_INSTANCE=$collector
  collector_services start
  python3 - "$fired" "$(sed -nE 's/^ngd_runbook_base_url: "([^"]+)".*/\1/p' "$GV/main.yml")" \
    "$OP/docs/runbooks/alerts.md" "$OP/prometheus/tools" <<'PY' || return 1
import json, sys
fired, base, runbooks, tools = sys.argv[1:]
sys.path.insert(0, tools)
from check_rules import heading_anchors
notification = json.loads(fired)
url = notification["alert"]["annotations"].get("runbook_url", "")
page, _, anchor = url.partition("#")
if notification["receiver"] != "pager":
    sys.exit(f"NodeDown went to the {notification['receiver']} receiver, not the pager")
if page != base or anchor not in heading_anchors(open(runbooks).read()):
    sys.exit(f"runbook_url {url!r}: not {base}#<a heading of docs/runbooks/alerts.md>")
print(f"runbook link: {url}")
PY
  # Whole again before the next step: no critical alert active (the deploy gate's own question),
  # as soon as Prometheus has scraped the collector again and told Alertmanager.
  local deadline=$((SECONDS + 300))
  until python3 "$OP/scripts/ops/alerts.py" --inventory "$INV" --port "$AM_PORT" \
    --vault-password-file "$VAULT_PASS" --severity critical >"$WORK/alerts.log" 2>&1; do
    if ((SECONDS >= deadline)); then
      cat "$WORK/alerts.log" >&2
      warn "a critical alert is still active 300 s after healing"
      return 1
    fi
    sleep 5
  done
  ok "no critical alert active $((SECONDS - t0))s after the fault"
}
# The resolved notification waits for the pager route's group_interval (5 min): asked after the
# next step, which runs meanwhile, rather than waited for here.
pager_resolved() {
  received /pager resolved alertname=NodeDown env=production "instance=$PAGED_INSTANCE" >/dev/null || return 1
  ok "resolved notification received $((SECONDS - PAGED_AT))s after the fault"
  # What each receiver got: webhook payloads list their alerts, the chat's (Slack) payloads title them.
  python3 - "$WEBHOOKS" <<'PY'
import collections, json, sys
seen = collections.defaultdict(collections.Counter)
for line in open(sys.argv[1]):
    entry = json.loads(line)
    body = entry.get("body") or {}
    names = [f"{a['labels'].get('alertname')} {a['status']}" for a in body.get("alerts", [])]
    names += [a.get("title", "?") for a in body.get("attachments", [])]
    seen[entry["path"]].update(names or ["(no alert)"])
for path, names in sorted(seen.items()):
    print(f"recorded at {path}: " + ", ".join(f"{n} x{c}" for n, c in sorted(names.items())))
PY
}
((DRILL == 0)) || timed "pager: NodeDown delivered firing, healed" pager

# --- 9b. disaster recovery: backup, a gateway lost, a new server from OpenTofu, restore -----------
# scripts/ops/rehearsal_dr.sh: backup.sh production (off-host copy), gw-b's server lost, the
# disaster-recovery runbook (tofu apply -replace, deploy.sh, restore.sh), the RTO measured; frames
# only gw-b held come back from its spool, its replay state and secrets too.
disaster_recovery() {
  "$REPO_ROOT/scripts/ops/rehearsal_dr.sh" --checkout "$OP" --lab "$LAB" --identity "$AGE_KEY" --work "$WORK/dr"
}
timed "backup, gw-b lost, new server, restore (RTO)" disaster_recovery
mapfile -t -O "${#TIMINGS[@]}" TIMINGS <"$WORK/dr/timings.txt"
((DRILL == 0)) || timed "pager: NodeDown's resolved notification" pager_resolved

# --- 10. decommission ----------------------------------------------------------------------------
decommission() {
  tofu_env
  printf 'delete_protection = false\n' >>"$TFDIR/production.tfvars"
  tofu -chdir="$TFDIR" apply -input=false -auto-approve -var-file="$TFDIR/production.tfvars" >"$WORK/unprotect.log" \
    || { cat "$WORK/unprotect.log" >&2; die "tofu apply (delete_protection = false) failed"; }
  tofu -chdir="$TFDIR" destroy -input=false -auto-approve -var-file="$TFDIR/production.tfvars" >"$WORK/destroy.log" \
    || { cat "$WORK/destroy.log" >&2; die "tofu destroy failed"; }
  local counts
  counts=$(curl -fsS "${HCLOUD_ENDPOINT%/v1}/_twin/counts") || { warn "the twin's counts cannot be read"; return 1; }
  # {"counts": {"servers": 0, ...}}: every resource type must be at 0.
  python3 -c 'import json, sys
c = json.loads(sys.argv[1])["counts"]
print("twin after destroy: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
sys.exit(f"the twin is not empty: {c}" if not c or any(c.values()) else 0)' "$counts" || return 1
  # The host backend removes a deleted server's container after the delete action succeeded.
  local deadline=$((SECONDS + 120))
  while [[ -n "$(docker ps -aq --filter "label=$LABEL")" ]]; do
    ((SECONDS < deadline)) || die "host containers of $LAB still there 120 s after tofu destroy"
    sleep 1
  done
}
timed "tofu destroy (protection lifted), twin empty" decommission
ok "production rehearsal passed in $((SECONDS - T0))s"
