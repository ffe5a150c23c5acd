#!/usr/bin/env bash
# Integration hook: the failover drills (scripts/drill.sh all --env lab) against the lab the deploy
# hook (integration-deploy.sh, which runs just before) left deployed and running: the lab "deploy"
# by default, NGD_LAB=NAME drills another deployed lab. Fails when that lab is not deployed, and
# when any target is missed in any scenario:
#   - VIP on the backup <= 1.0 s after the master stops (master-stop);
#   - gateway-kill: devices reconnected <= 1 s p99 (lost connection -> first ACK), VIP unchanged;
#   - 0 acknowledged frames lost (acked but not at the sink, or never acked) in every scenario;
#   - partition: split brain alerted (KeepalivedSplitBrain active in the lab's Alertmanager) <= 60 s;
#   - after healing: exactly one MASTER (the other BACKUP) and one VIP holder.
# Bounded load: NGD_DRILL_DEVICES (200) devices sending NGD_DRILL_RATE (1000) frames/s in all from
# before each fault until the pair is whole again, at least NGD_DRILL_DURATION (12) s per scenario
# (drill.sh's own default is 20 s; a fault's effect and the healing are measured whatever the floor:
# 5 s of warm-up, the fault, the pair whole again, 3 s more; 12,000 frames or more per scenario).
# NGD_DRILLS="master-stop gateway-kill" runs a subset. Report: table above, JSON under logs/drills/.
# scripts/test.sh runs it in its critical lane, beside work that yields the CPU (nice, CPU weight).
set -euo pipefail
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 0
fi
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
cd "$REPO_ROOT"

export NGD_LAB="${NGD_LAB:-deploy}"
lab="$NGD_LAB"
t_start=$SECONDS
ensure_docker

# --- the lab must be deployed: inventory, hosts running, the pair's services active ------------
if [[ "$lab" == lab ]]; then
  inventory="$REPO_ROOT/ansible/inventories/lab/hosts.yml"
else
  inventory="$REPO_ROOT/.lab/$lab/inventory/hosts.yml"
fi
not_deployed="lab '$lab' is not deployed; deploy it first: NGD_LAB=$lab scripts/deploy.sh lab --yes (in CI scripts/ci/integration-deploy.sh does, just before this hook)"
[[ -f "$inventory" ]] || die "$not_deployed (no inventory ${inventory#"$REPO_ROOT"/})"
for host in gw-a gw-b mon collector; do
  container="ngd-$lab-$host"
  [[ "$("$DOCKER" inspect -f '{{.State.Running}}' "$container" 2>/dev/null)" == true ]] \
    || die "$not_deployed (host $host, container $container, is not running)"
done
units=(keepalived nginx nanogridata-gateway prometheus-node-exporter)
for host in gw-a gw-b; do
  # systemctl prints one state per unit (and fails unless all are active).
  mapfile -t states < <("$DOCKER" exec "ngd-$lab-$host" systemctl is-active "${units[@]}" 2>/dev/null || true)
  inactive=()
  for i in "${!units[@]}"; do
    [[ "${states[i]:-unknown}" == active ]] || inactive+=("${units[i]}=${states[i]:-unknown}")
  done
  ((${#inactive[@]} == 0)) || die "$not_deployed (on $host: ${inactive[*]})"
done
log "lab '$lab' is deployed (inventory ${inventory#"$REPO_ROOT"/}); drilling it"

# --- the drills ----------------------------------------------------------------------------------
load=(--devices "${NGD_DRILL_DEVICES:-200}" --rate "${NGD_DRILL_RATE:-1000}" --duration "${NGD_DRILL_DURATION:-12}")
failed=()
if [[ -z "${NGD_DRILLS:-}" ]]; then
  banner "drill all (lab $lab)"
  ./scripts/drill.sh all --env lab "${load[@]}" || failed+=(all)
else
  for scenario in $NGD_DRILLS; do
    banner "drill $scenario (lab $lab)"
    ./scripts/drill.sh "$scenario" --env lab "${load[@]}" || failed+=("$scenario")
  done
fi
log "drills took $((SECONDS - t_start))s"
((${#failed[@]} == 0)) || die "drills missed targets: ${failed[*]} (table above; JSON under logs/drills/)"
ok "every drill met its targets in lab '$lab' ($((SECONDS - t_start))s)"
