#!/usr/bin/env bash
# Integration hook: the failover drills against the lab, after the deploy hook
# (integration-deploy.sh) left a deployed lab running. Runs `scripts/drill.sh all --env lab` with
# a bounded load (200 devices x 5 frames/s for 20 s per scenario) and fails when any target is
# missed: VIP on the backup <= 1.0 s after the master stops, gateway kill reconnects <= 1 s p99
# with the VIP unchanged, 0 acknowledged frames lost, split brain alerted <= 60 s.
# NGD_DRILLS="master-stop gateway-kill" runs a subset; NGD_LAB=NAME drills another deployed lab.
set -euo pipefail
source "$REPO_ROOT/scripts/lib/common.sh"
cd "$REPO_ROOT"

ensure_docker
lab="${NGD_LAB:-lab}"
gateways_up=$("$DOCKER" ps -q --filter label=io.nanogridata.lab="$lab" --filter name="ngd-$lab-gw-" | wc -l)
((gateways_up == 2)) || die "the lab's two gateways are not running ($gateways_up up): run scripts/deploy.sh lab"

load=(--devices "${NGD_DRILL_DEVICES:-200}" --rate "${NGD_DRILL_RATE:-1000}" --duration "${NGD_DRILL_DURATION:-20}")
failed=()
for scenario in ${NGD_DRILLS:-all}; do
  banner "drill $scenario"
  ./scripts/drill.sh "$scenario" --env lab "${load[@]}" || failed+=("$scenario")
done
((${#failed[@]} == 0)) || die "drills missed targets: ${failed[*]} (tables above; JSON under logs/drills/)"
ok "every drill met its targets"
