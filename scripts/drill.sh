#!/usr/bin/env bash
# Failover drills as code: inject one fault into the HA pair under device traffic, heal it, and
# report what happened (table on stdout, JSON under logs/drills/). See
# docs/runbooks/vip-failover-drill.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

SCENARIOS=(master-stop master-reboot keepalived-stop nginx-kill nginx-stop gateway-kill partition backup-stop)

usage() {
  cat <<USAGE
Usage: ${0##*/} SCENARIO|all [--env lab|staging|production] [options]

Scenarios (one fault at a time; 'all' runs them in this order):
  master-stop      the master host stops (lab only: needs host power control)
  master-reboot    the master host reboots
  keepalived-stop  keepalived stops on the master
  nginx-kill       nginx's master process crashes (SIGKILL): systemd restarts it, the VIP stays
  nginx-stop       nginx is stopped on the master and stays down: the VIP moves
  gateway-kill     the gateway on the master is killed: the VIP must stay, nginx masks it
  partition        VRRP between the gateways is dropped: split brain, alerted, healed
  backup-stop      the backup host stops (lab only): traffic must not notice

Each scenario runs the device simulator through the VIP, injects the fault, heals it, waits
until the pair is whole again (both hosts ready, one MASTER and one BACKUP, exactly one VIP
holder), keeps traffic on the healed pair a few seconds and measures: time to VIP on the other
node, device reconnect p50/p99 (lost connection -> first ACK), frames sent/acked/stored at the
sink, acked but missing (must be 0), duplicates, alerts fired and resolved (Alertmanager).
Exits non-zero when any target is missed.

Environment: NGD_LAB=NAME drills the lab NAME built by 'NGD_LAB=NAME scripts/deploy.sh lab'.

Options:
  --env ENV        inventory ansible/inventories/ENV (default: lab)
  --devices N      simulated devices (default 200)
  --rate R         total frames per second (default 1000)
  --duration S     minimum seconds of traffic per scenario (default 20); traffic runs from
                   before the fault until the pair is whole again after healing
  --yes            skip the typed confirmation (staging/production)
  -h, --help       this help

Outside the lab the drill asks for typed confirmation (unless --yes) and refuses to start while
Alertmanager reports an active alert (the always-firing Watchdog aside). A lock ensures one
drill (one fault) at a time per env.
USAGE
}

scenario="" env=lab py_args=()
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --env) env="${2:?--env needs a value (lab, staging or production)}"; shift 2 ;;
    --devices|--rate|--duration) py_args+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --yes) export ASSUME_YES=1; shift ;;
    -*) usage >&2; die "unknown option '$1' (see --help)" ;;
    *)
      [[ -z "$scenario" ]] || die "one scenario at a time (got '$scenario' and '$1'); use 'all' for every one"
      scenario="$1"; shift ;;
  esac
done
[[ -n "$scenario" ]] || { usage >&2; die "missing SCENARIO (one of: ${SCENARIOS[*]} all)"; }
[[ " ${SCENARIOS[*]} all " == *" $scenario "* ]] || die "unknown scenario '$scenario' (one of: ${SCENARIOS[*]} all)"
case "$env" in lab|staging|production) ;; *) die "unknown --env '$env' (lab, staging or production)" ;; esac
lab_name="${NGD_LAB:-lab}"
if [[ "$env" == lab && "$lab_name" != lab ]]; then
  inventory="$REPO_ROOT/.lab/$lab_name/inventory/hosts.yml"  # written by deploy.sh for that lab
else
  inventory="$REPO_ROOT/ansible/inventories/$env/hosts.yml"
fi
[[ -f "$inventory" ]] || die "no inventory $inventory (lab: run scripts/deploy.sh lab first)"

source "$REPO_ROOT/scripts/lib/toolenv.sh"
source "$REPO_ROOT/scripts/ops/lib.sh"
toolenv_activate >/dev/null
# The inventory is read with ansible-inventory (here and by ngd_drills): outside the lab its vars
# include the vault, which it cannot read without the password deploy.sh uses.
vault_file=$(ops_vault_file "$env")
if [[ -n "$vault_file" ]]; then
  export ANSIBLE_VAULT_PASSWORD_FILE="$vault_file"
elif [[ "$env" != lab ]]; then
  die "no vault password file for $env: set NGD_VAULT_PASSWORD_FILE or create ~/.config/nanogridata/vault-password-$env"
fi
[[ "$env" == lab ]] && ensure_docker

# One drill per environment at a time: a second fault must never overlap the first.
mkdir -p "$NGD_CACHE/locks"
lock="$NGD_CACHE/locks/drill-$env${NGD_LAB:+-$NGD_LAB}.lock"
exec 8>"$lock"
flock -n 8 || die "another drill is running against '$env' (lock $lock)"

if [[ "$env" != lab ]]; then
  log "checking Alertmanager for active alerts before touching $env"
  check_rc=0
  PYTHONPATH="$REPO_ROOT/scripts/drills" python3 - "$env" <<'PY' || check_rc=$?
import sys
from ngd_drills.env import DrillError, load_inventory, make_executor
from ngd_drills.observe import active_alerts
try:
    inv = load_inventory(sys.argv[1])
    inv.require_groups()
except DrillError as exc:
    print(f"drill: {exc}", file=sys.stderr)
    sys.exit(2)
ex = make_executor(inv)
try:
    alerts = active_alerts(ex, inv.first("monitoring"), inv.ports["ngd_alertmanager_port"])
finally:
    ex.close()
if alerts is None:
    sys.exit("Alertmanager does not answer: cannot tell whether the pair is healthy")
if alerts:
    for a in alerts:
        print(f"  active: {a.get('labels', {}).get('alertname')} {a.get('labels', {})}", file=sys.stderr)
    sys.exit(1)
PY
  ((check_rc != 2)) || exit 2  # the inventory cannot be drilled (above)
  ((check_rc == 0)) || die "refusing to drill while alerts are active (above) or Alertmanager is unreachable"
  confirm "This injects real faults ($scenario) into $env under device traffic." "drill $env"
fi

export PYTHONPATH="$REPO_ROOT/scripts/drills${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m ngd_drills "$scenario" --env "$env" "${py_args[@]}"
