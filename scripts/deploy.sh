#!/usr/bin/env bash
# Deploy the Nanogridata gateway pair to an environment: preflight, infrastructure, build,
# Ansible roll-out, verification, summary. The README's main command is `./scripts/deploy.sh lab`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$REPO_ROOT/scripts/lib/toolenv.sh"
source "$REPO_ROOT/scripts/ops/lib.sh"

usage() {
  cat <<USAGE
Usage: ${0##*/} ENV [--version V] [--infra|--no-infra] [--gateway-only] [--check] [--yes]
          [--trust-new-host-keys]

Deploys the gateway pair to ENV (lab, staging or production):
  1. preflight   tools, vault password, cloud token and a filled-in ENV.tfvars (infra), a
                 real sink (collector_enabled = true or gateway_sinks; production refuses
                 without one), Alertmanager has no critical alert firing (production), clean
                 working tree or --version
  2. infra       lab: scripts/lab.sh up (Docker, images, hosts); staging/production: tofu plan
                 -var-file=ENV.tfvars (and fresh SSH host keys for new hosts), confirm, apply
                 in terraform/environments/ENV, then terraform/inventory_bridge.py (hosts.yml,
                 known_hosts from OpenTofu's host keys); every environment: wait until each host
                 answers SSH with a trusted host key and cloud-init is done
  3. build       the gateway wheelhouse, versioned from git (git describe -> PEP 440): the
                 gateway wheel and its dependencies' binary wheels for the hosts' CPU, CPython
                 and glibc as they report them (pip download), whatever this machine runs
  4. deploy      first deploy: ansible/site.yml; later deploys of a new version: ansible/deploy.yml
                 (rolling, drain, health gates), then site.yml converges every node's configuration
                 (nginx, keepalived, Prometheus rules...; the gateways already run the new release);
                 the same version again: site.yml (converge)
  5. verify      testinfra (ansible/tests/infra, non-disruptive), VIP probe, end-to-end probe
                 frames sent to the VIP and found at the sink (VictoriaMetrics on the collector,
                 else every sink of the gateways; a sink that got nothing fails). When it fails after a
                 rolling deploy, the gateways are rolled back to the previous release.
  6. summary     version, nodes, VIP holder, URLs, step durations

Options:
  --version V    deploy this version (PEP 440) instead of the one git describes; needed on a
                 dirty working tree for staging/production
  --infra        run step 2 even where it is skipped by default
  --no-infra     skip step 2 (use the existing hosts and inventory)
  --gateway-only a new version rolls out the gateway release only, without the converge of
                 step 4 (a hotfix; the next plain deploy.sh converges)
  --check        Ansible check/diff mode: show what would change, change nothing (no infra
                 apply, no verify)
  --yes          no confirmation prompts (production otherwise asks to type its name)
  --trust-new-host-keys
                 accept and record the SSH host key of a host OpenTofu holds no key for
                 (trust on first use: a host made before host keys were managed); without it
                 such a host is refused
  -h, --help     this help

Environment: NGD_LAB / NGD_LAB_SUBNET (another lab than "lab", as for scripts/lab.sh),
NGD_VAULT_PASSWORD_FILE (vault password file; the lab makes its own),
NGD_ALERTMANAGER_URL (Alertmanager to ask in preflight; default: the monitoring host's),
HCLOUD_TOKEN (staging/production infra), NGD_TFVARS_FILE (the OpenTofu variable file; default:
terraform/environments/ENV/ENV.tfvars, copied from ENV.tfvars.example and filled in),
NGD_DEPLOY_SKIP_TESTINFRA=1 (skip testinfra only), NGD_HOST_WAIT_TIMEOUT (seconds for every host
to answer SSH and finish cloud-init; default 600).
Every run writes logs/deploy-ENV-<UTC time>.log.
USAGE
}

ENV_NAME="" VERSION="" INFRA="" CHECK=0 GATEWAY_ONLY=0 TRUST_NEW_HOST_KEYS=0
while (($#)); do
  case "$1" in
    --version) VERSION="${2:?--version needs a value, e.g. --version 1.2.0}"; shift 2 ;;
    --version=*) VERSION="${1#*=}"; shift ;;
    --infra) INFRA=1; shift ;;
    --no-infra) INFRA=0; shift ;;
    --check) CHECK=1; shift ;;
    --gateway-only) GATEWAY_ONLY=1; shift ;;
    --trust-new-host-keys) TRUST_NEW_HOST_KEYS=1; shift ;;
    --yes|-y) export ASSUME_YES=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [[ -z "$ENV_NAME" ]] || die "one environment only (got '$ENV_NAME' and '$1')"; ENV_NAME=$1; shift ;;
  esac
done
[[ -n "$ENV_NAME" ]] || { usage >&2; die "missing ENV (lab, staging or production)"; }
ops_check_env "$ENV_NAME"
[[ -n "$INFRA" ]] || INFRA=1
INVENTORY=$(ops_inventory "$ENV_NAME")
TF_DIR="$REPO_ROOT/terraform/environments/$ENV_NAME"
# Absolute: tofu runs with -chdir.
TFVARS=$(realpath -m "${NGD_TFVARS_FILE:-$TF_DIR/$ENV_NAME.tfvars}")
T_START=$SECONDS

ops_log_start deploy "$ENV_NAME"
HOST_KEYS_DIR=""
on_exit() {
  local rc=$?
  [[ -z "$HOST_KEYS_DIR" ]] || rm -rf "$HOST_KEYS_DIR"
  ((rc == 0)) || printf '%s\n' "deploy $ENV_NAME FAILED after $((SECONDS - T_START))s; log: ${OPS_LOG#"$REPO_ROOT"/}" >&2
  return "$rc"
}
trap on_exit EXIT
ops_steps 6

# --- 1. preflight -------------------------------------------------------------------------------
step "preflight"
# Checks of the command line and the operator's machine first: they fail in a second.
if [[ -n "$VERSION" ]]; then
  ops_check_version "$VERSION"
elif [[ "$ENV_NAME" != lab && -n "$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null)" ]]; then
  die "the working tree has uncommitted changes: commit them, or name the release with --version"
fi
if [[ "$ENV_NAME" != lab ]]; then
  if ((INFRA)); then
    [[ -n "${HCLOUD_TOKEN:-}" ]] || die "HCLOUD_TOKEN is not set (needed by tofu for --infra); export it or pass --no-infra"
    [[ -d "$TF_DIR" ]] || die "no Terraform environment at ${TF_DIR#"$REPO_ROOT"/}"
    # A placeholder admin network in the cloud firewall locks the operator out of his own hosts.
    python3 "$OPS_DIR/tfvars_check.py" "$TFVARS" --variables "$TF_DIR" \
      --example "terraform/environments/$ENV_NAME/$ENV_NAME.tfvars.example" --name "${TFVARS#"$REPO_ROOT"/}" \
      || die "the OpenTofu variables of $ENV_NAME are not ready (above); see README.md, Production in five steps"
  fi
  [[ -n "$(ops_vault_file "$ENV_NAME")" ]] \
    || die "no vault password file: set NGD_VAULT_PASSWORD_FILE or create ~/.config/nanogridata/vault-password-$ENV_NAME"
  [[ -f "$INVENTORY" ]] || ((INFRA)) || die "no inventory ${INVENTORY#"$REPO_ROOT"/}: run with --infra (tofu + inventory bridge) first"
fi
toolenv_activate
for tool in ansible-playbook ansible-inventory pytest git python3; do require_cmd "$tool" "the tool venv should provide it"; done
log "ansible $(ansible --version 2>/dev/null | sed -nE '1s/.*core ([0-9.]+).*/\1/p'), python $(python3 -c 'import sys; print(sys.version.split()[0])')"
if [[ "$ENV_NAME" == lab ]]; then ensure_docker; fi
if [[ "$ENV_NAME" != lab ]]; then
  # Without a collector or a gateway_sinks entry, device data only reaches a local archive file.
  if ((INFRA)); then
    sink_args=(--tfvars "$TFVARS" --tfvars-name "${TFVARS#"$REPO_ROOT"/}" --variables "$TF_DIR/variables.tf")
  else
    sink_args=(--inventory "$INVENTORY")
  fi
  python3 "$OPS_DIR/sink_check.py" "$ENV_NAME" "${sink_args[@]}" || exit 2
fi
if [[ "$ENV_NAME" != lab && ( -f "$INVENTORY" || -n "${NGD_ALERTMANAGER_URL:-}" ) ]]; then
  # A deploy must not add a change on top of an ongoing incident.
  # Asked on the monitoring host over SSH: its port stays closed to the outside.
  alerts_rc=0
  python3 "$OPS_DIR/alerts.py" --inventory "$INVENTORY" --port "$(ops_port ngd_alertmanager_port)" \
    --vault-password-file "$(ops_vault_file "$ENV_NAME")" \
    --severity critical ${NGD_ALERTMANAGER_URL:+--url "$NGD_ALERTMANAGER_URL"} || alerts_rc=$?
  if ((alerts_rc == 3)); then
    log "no Alertmanager on the monitoring host yet (an earlier first deploy stopped before it): nothing to ask"
  elif ((alerts_rc)); then
    reason="a critical alert is firing (above): resolve or silence it first"
    [[ $alerts_rc == 2 ]] && reason="Alertmanager cannot be asked (above): a deploy must not go ahead blind"
    [[ "$ENV_NAME" == production ]] && die "$reason"
    warn "$reason; continuing ($ENV_NAME is not production)"
  fi
fi
if [[ "$ENV_NAME" == production && $CHECK == 0 ]]; then
  confirm "Deploy to PRODUCTION." production
fi

# --- 2. infrastructure ------------------------------------------------------------------------
step "infrastructure"
if ((INFRA == 0)); then
  log "skipped (--no-infra)"
elif [[ "$ENV_NAME" == lab ]]; then
  "$REPO_ROOT/scripts/lab.sh" up
  ops_lab_inventory
else
  bash "$REPO_ROOT/terraform/tools/install-tofu.sh"
  eval "$(bash "$REPO_ROOT/terraform/tools/install-tofu.sh" --print-env)"
  require_cmd tofu "terraform/tools/install-tofu.sh should have installed it"
  tofu -chdir="$TF_DIR" init -input=false >/dev/null || die "tofu init failed in ${TF_DIR#"$REPO_ROOT"/}"
  # SSH host keys for the hosts of this plan: a host created by this apply gets its key from
  # OpenTofu (cloud-init writes it, the bridge writes known_hosts from the output), so its first
  # SSH connection is verified. Hosts that exist keep theirs (the module ignores later values).
  # The keys stay (0700, in OpenTofu's per-checkout data directory) until an apply succeeded:
  # after an interrupted apply the servers it created run with them, and the re-run must hand
  # OpenTofu the same ones.
  require_cmd ssh-keygen "install openssh-client"
  pending_keys_dir="${TF_DATA_DIR:-.terraform}/pending-host-keys"
  [[ "$pending_keys_dir" == /* ]] || pending_keys_dir="$TF_DIR/$pending_keys_dir"
  (umask 077 && mkdir -p "$pending_keys_dir")
  # This run's variable file, plan and plan JSON hold the private keys too (a plan holds the
  # variables' values): beside them, not in /tmp. A killed run's go with the pending keys, once an
  # apply succeeded.
  HOST_KEYS_DIR=$(mktemp -d "$pending_keys_dir/run.XXXXXX")
  host_keys_file="$HOST_KEYS_DIR/host-keys.tfvars.json"
  plan_file="$HOST_KEYS_DIR/deploy.tfplan"
  # The hosts this plan has, as OpenTofu names them in the inventory output (known before any
  # apply: the names come from the module and the variables, not from the cloud).
  hosts_json=$(echo 'jsonencode(keys(module.gateway_pair.inventory.hosts))' \
    | tofu -chdir="$TF_DIR" console -no-color -var-file="$TFVARS") \
    || die "tofu console could not list the hosts of ${TF_DIR#"$REPO_ROOT"/} (above)"
  # The console prints the JSON text as an HCL string literal: decoded twice.
  host_lines=$(python3 -c 'import json, sys; print(*json.loads(json.loads(sys.argv[1])), sep="\n")' "$hosts_json") \
    || die "tofu console answered no host list: $hosts_json"
  mapfile -t HOST_NAMES <<<"$host_lines"
  [[ -n "${HOST_NAMES[0]}" ]] || die "the inventory output of ${TF_DIR#"$REPO_ROOT"/} has no hosts"
  for host in "${HOST_NAMES[@]}"; do
    [[ -s "$pending_keys_dir/$host" && -s "$pending_keys_dir/$host.pub" ]] \
      || ssh-keygen -q -t ed25519 -N '' -C "$host host key" -f "$pending_keys_dir/$host" <<<y >/dev/null \
      || die "ssh-keygen failed"
  done
  python3 - "$pending_keys_dir" "${HOST_NAMES[@]}" >"$host_keys_file" <<'PY' || die "could not write the host keys' variable file"
import json, sys
from pathlib import Path
d, hosts = Path(sys.argv[1]), sys.argv[2:]
print(json.dumps({
    "host_public_keys": {h: (d / f"{h}.pub").read_text().strip() for h in hosts},
    "host_private_keys": {h: (d / h).read_text() for h in hosts},
}))
PY
  tofu_plan() {
    set +e
    tofu -chdir="$TF_DIR" plan -input=false -var-file="$TFVARS" -var-file="$host_keys_file" -detailed-exitcode -out="$plan_file"
    plan_rc=$?
    set -e
  }
  # Import blocks for what an earlier run adopted (below) are recomputed each run.
  imports_file="$TF_DIR/adopted_imports.tf"
  rm -f "$imports_file"
  tofu_plan
  if ((plan_rc == 2 && CHECK == 0)); then
    # Resources an interrupted apply created without recording them: the plan would create them
    # again and the cloud refuses their names. They are imported by the plan itself (import
    # blocks: one `tofu import` at a time fails on the module's outputs, which index every host).
    tofu -chdir="$TF_DIR" show -json "$plan_file" >"$HOST_KEYS_DIR/plan.json" || die "tofu show -json of the plan failed"
    adopt=$(python3 "$REPO_ROOT/terraform/tools/adopt.py" "$HOST_KEYS_DIR/plan.json") \
      || die "could not look for resources an interrupted apply left unrecorded (above)"
    if [[ -n "$adopt" ]]; then
      printf '# Written by scripts/deploy.sh: resources an interrupted apply created, imported by this plan.\n' >"$imports_file"
      while read -r address id; do
        warn "adopting $address (id $id): created by an apply that was interrupted before recording it"
        printf 'import {\n  to = %s\n  id = "%s"\n}\n' "$address" "$id" >>"$imports_file"
      done <<<"$adopt"
      log "planning again with the adopted resources"
      tofu_plan
    fi
  fi
  case $plan_rc in
    0) log "no infrastructure change"; rm -rf "$pending_keys_dir" ;;
    2)
      if ((CHECK)); then
        log "check mode: the plan above is NOT applied"
      else
        confirm "Apply this plan to $ENV_NAME?" "$ENV_NAME"
        tofu -chdir="$TF_DIR" apply -input=false "$plan_file" || die "tofu apply failed"
        rm -rf "$pending_keys_dir" "$imports_file"
      fi ;;
    *) die "tofu plan failed (above)" ;;
  esac
  rm -rf "$HOST_KEYS_DIR"
  python3 "$REPO_ROOT/terraform/inventory_bridge.py" "$ENV_NAME" || die "the inventory bridge failed (above)"
fi
[[ -f "$INVENTORY" ]] || die "no inventory at ${INVENTORY#"$REPO_ROOT"/}"
# New servers boot, start sshd and run cloud-init after `tofu apply` returns: wait for all of it,
# with every host's SSH key checked (known_hosts from OpenTofu; the lab's containers need neither).
wait_args=(--inventory "$INVENTORY" --timeout "${NGD_HOST_WAIT_TIMEOUT:-600}")
((TRUST_NEW_HOST_KEYS)) && wait_args+=(--trust-new-host-keys)
vault_file=$(ops_vault_file "$ENV_NAME")
env ANSIBLE_CONFIG="$REPO_ROOT/ansible/ansible.cfg" ${vault_file:+ANSIBLE_VAULT_PASSWORD_FILE="$vault_file"} \
  python3 "$OPS_DIR/wait_hosts.py" "${wait_args[@]}" || exit $?
ops_ansible "$ENV_NAME" all -m ansible.builtin.ping >/dev/null || die "some hosts of the inventory do not answer (ansible ping)"
ok "every host of ${INVENTORY#"$REPO_ROOT"/} answers"

# --- 3. build ---------------------------------------------------------------------------------
step "build the gateway release"
[[ -n "$VERSION" ]] || VERSION=$(ops_git_version)
log "release: $VERSION"
# The wheels are for the hosts' CPU, CPython and glibc, as the hosts report them (not this machine's).
host_target=$(ops_host_target "$ENV_NAME") || exit $?
read -r HOST_ARCH HOST_PYTHON HOST_GLIBC <<<"$host_target"
log "hosts: $HOST_ARCH, CPython $HOST_PYTHON, glibc $HOST_GLIBC"
ops_build_wheelhouse "$VERSION" "$HOST_ARCH" "$HOST_PYTHON" "$HOST_GLIBC"

# --- 4. deploy --------------------------------------------------------------------------------
step "deploy"
STATUS_JSON=$(mktemp)
ops_status "$ENV_NAME" "$STATUS_JSON" || die "could not read the gateways' release state"
installed_on=$(ops_status_field "$STATUS_JSON" "sum(1 for h in s.values() if h['current'])")
current_on=$(ops_status_field "$STATUS_JSON" "sum(1 for h in s.values() if h['current'] == '$VERSION')")
nodes=$(ops_status_field "$STATUS_JSON" "len(s)")
PREVIOUS=$(ops_status_field "$STATUS_JSON" "sorted({h['current'] for h in s.values() if h['current']} - {'$VERSION'}) and sorted({h['current'] for h in s.values() if h['current']} - {'$VERSION'})[0] or ''")
check_args=()
((CHECK)) && check_args=(--check --diff)
MODE=""
if ((installed_on < nodes)); then
  MODE=first
  log "first deploy (gateway installed on $installed_on of $nodes nodes): site.yml"
  ops_playbook "$ENV_NAME" "$REPO_ROOT/ansible/site.yml" -e "gateway_release=$VERSION" "${check_args[@]}" \
    || die "site.yml failed (above)"
elif ((current_on == nodes)); then
  MODE=converge
  log "$VERSION already runs on every gateway: site.yml converges the configuration"
  ops_playbook "$ENV_NAME" "$REPO_ROOT/ansible/site.yml" -e "gateway_release=$VERSION" "${check_args[@]}" \
    || die "site.yml failed (above)"
else
  MODE=rolling
  log "rolling deploy $PREVIOUS -> $VERSION: deploy.yml"
  ops_playbook "$ENV_NAME" "$REPO_ROOT/ansible/deploy.yml" -e "gateway_release=$VERSION" "${check_args[@]}" \
    || die "deploy.yml failed (above); the node that failed keeps its previous release: scripts/rollback.sh $ENV_NAME"
  if ((GATEWAY_ONLY)); then
    log "--gateway-only: the nodes' configuration is not converged (a plain deploy.sh $ENV_NAME does)"
  else
    # deploy.yml changes only the gateway release: configuration changes of this checkout reach
    # the nodes here (handlers check each config before reloading it).
    log "every gateway runs $VERSION: site.yml converges the configuration of every node"
    ops_playbook "$ENV_NAME" "$REPO_ROOT/ansible/site.yml" -e "gateway_release=$VERSION" "${check_args[@]}" \
      || die "site.yml failed (above) after the roll-out of $VERSION; fix it and run deploy.sh $ENV_NAME again (a converge)"
  fi
fi

# --- 5. verify --------------------------------------------------------------------------------
step "verify"
verify() {
  if [[ -d "$REPO_ROOT/ansible/tests/infra" && "${NGD_DEPLOY_SKIP_TESTINFRA:-0}" != 1 ]]; then
    log "testinfra: ansible/tests/infra (not disruptive)"
    # testinfra reads the inventory with ansible-inventory: it needs the vault's password too.
    ANSIBLE_CONFIG="$REPO_ROOT/ansible/ansible.cfg" ANSIBLE_VAULT_PASSWORD_FILE="$(ops_vault_file "$ENV_NAME")" \
      pytest -q -p no:cacheprovider "$REPO_ROOT/ansible/tests/infra" \
      --hosts='ansible://all' --ansible-inventory="$INVENTORY" -m 'not disruptive' \
      || { warn "testinfra failed (above)"; return 1; }
  fi
  local probe_device=$((3000000000 + $(date +%s) % 1000000000))
  log "end-to-end: probe device $probe_device -> VIP -> gateway -> VictoriaMetrics"
  ops_playbook "$ENV_NAME" "$OPS_DIR/verify.yml" -e "ngd_release=$VERSION" -e "ngd_probe_device=$probe_device" \
    -e "ngd_probe_started=$(date +%s)" \
    || { warn "end-to-end probe failed (above)"; return 1; }
}
if ((CHECK)); then
  log "check mode: nothing was changed, nothing to verify"
elif ! verify; then
  if [[ "$MODE" == rolling && -n "$PREVIOUS" ]]; then
    warn "verification failed after the rolling deploy: rolling back to $PREVIOUS"
    ops_playbook "$ENV_NAME" "$REPO_ROOT/ansible/rollback.yml" -e "gateway_release=$PREVIOUS" \
      || die "verification of $VERSION failed AND the rollback to $PREVIOUS failed: see the log"
    die "verification of $VERSION failed; rolled back to $PREVIOUS"
  fi
  die "verification of $VERSION failed (mode $MODE; nothing to roll back to)"
fi

# --- 6. summary -------------------------------------------------------------------------------
step "summary"
ops_status "$ENV_NAME" "$STATUS_JSON" || die "could not read the gateways' release state"
steps_done
mon_ip=$(ops_inventory_var "$ENV_NAME" "$(ops_group_hosts "$ENV_NAME" monitoring | head -1)" ngd_private_ip)
col_ip=$(ops_inventory_var "$ENV_NAME" "$(ops_group_hosts "$ENV_NAME" collectors | head -1)" ngd_private_ip)
vip=$(ops_inventory_var "$ENV_NAME" "$(ops_group_hosts "$ENV_NAME" gateways | head -1)" ngd_vip)
banner "deployed $ENV_NAME"
printf '  %-16s %s%s\n' version "$VERSION" "$( ((CHECK)) && echo ' (check mode: not deployed)')"
printf '  %-16s %s\n' mode "$MODE"
python3 - "$STATUS_JSON" <<'PY'
import json, sys
for host, h in sorted(json.load(open(sys.argv[1])).items()):
    print(f"  {'node ' + host:16} release {h['current'] or '-'}  ready {'yes' if h['ready'] else 'NO'}"
          f"{'  VIP holder' if h['vip'] else ''}")
PY
printf '  %-16s %s:%s (devices)\n' VIP "$vip" "$(ops_port ngd_device_port)"
printf '  %-16s http://%s:%s\n' Prometheus "$mon_ip" "$(ops_port ngd_prometheus_port)" \
  Alertmanager "$mon_ip" "$(ops_port ngd_alertmanager_port)" VictoriaMetrics "$col_ip" "$(ops_port ngd_victoriametrics_port)"
printf '  %-16s %ds\n' "time" "$((SECONDS - T_START))"
ops_timings
printf '  %-16s %s\n' log "${OPS_LOG#"$REPO_ROOT"/}"
rm -f "$STATUS_JSON" "$STATUS_JSON.log"
ok "deploy $ENV_NAME $VERSION done in $((SECONDS - T_START))s"
