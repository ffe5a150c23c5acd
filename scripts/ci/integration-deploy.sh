#!/usr/bin/env bash
# Integration hook: the operator scripts against the lab, for real.
#   1. scripts/deploy.sh lab (cold on a fresh machine, or on top of the running lab)
#   2. a second deploy with a new --version (--gateway-only) while devices send traffic: 0
#      acknowledged frames lost
#   3. scripts/rollback.sh (no --to) back to the first version, traffic flowing: 0 lost; a
#      second rollback.sh stays on it
#   3b. monitoring of the deployed lab: every Prometheus scrape target on mon is up, and
#      every Grafana panel query returns data (grafana/tools/check_queries.py, run on mon where
#      Grafana would run), except the queries grafana/ci/empty-in-healthy-lab.txt names with a reason
#   (the runbooks' commands run in the production rehearsal, scripts/rehearsal.sh, over SSH)
#   4. scripts/ops/backup_drill.sh: backup.sh lab under write load; the gateways' replay state,
#      spool and secrets and the collector's data are destroyed; restore.sh (timed: the RTO) brings
#      them back: 0 frames lost of those acknowledged before the backup's spool snapshot, an old
#      frame refused as a duplicate again, the secrets back.
# Prints the measured durations. Runs in its own lab "deploy" (172.30.59.0/24), never in the lab
# "lab" people work in; the lab is kept for the next run (cheap re-run) unless
# NGD_DEPLOY_CI_DOWN=1. NGD_DEPLOY_CI_FRESH=1 starts from `lab.sh down` (a cold deploy).
set -euo pipefail
export NGD_LAB="${NGD_DEPLOY_CI_LAB:-deploy}" NGD_LAB_SUBNET="${NGD_DEPLOY_CI_SUBNET:-172.30.59.0/24}"
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
help_from_header "$@"
source "$REPO_ROOT/scripts/ops/lib.sh"
cd "$REPO_ROOT"

LAB_SH="$REPO_ROOT/scripts/lab.sh"
declare -a TIMINGS=()
timed() {  # timed LABEL CMD...
  local label="$1" t=$SECONDS rc=0
  shift
  "$@" || rc=$?
  TIMINGS+=("$(printf '%-40s %5ds%s' "$label" "$((SECONDS - t))" "${rc/#0/}")")
  return "$rc"
}
fail() { die "deploy integration: $*"; }
in_lab() { "$LAB_SH" shell "$@" </dev/null; }
print_timings() {
  ((${#TIMINGS[@]})) || return 0
  banner "deploy integration timings"
  printf '%s\n' "${TIMINGS[@]}"
}

ensure_docker
if [[ "${NGD_DEPLOY_CI_FRESH:-0}" == 1 ]]; then "$LAB_SH" down; fi
WORK=$(mktemp -d)
TRAFFIC_STOP="$WORK/stop-traffic"
cleanup() {
  local rc=$?
  ((rc == 0)) || print_timings  # a failed run still says how long each part took
  touch "$TRAFFIC_STOP"
  wait 2>/dev/null || true
  rm -rf "$WORK"
  if [[ "${NGD_DEPLOY_CI_DOWN:-0}" == 1 ]]; then "$LAB_SH" down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

current_release() {  # the release both gateways run (fails when they differ)
  local json="$WORK/status.json"
  ops_status lab "$json" || return 1
  ops_status_field "$json" "(lambda c: c.pop() if len(c) == 1 else 'MIXED:' + ','.join(sorted(c)))({h['current'] for h in s.values()})"
}

# --- 1. deploy ----------------------------------------------------------------------------------
# The lab is kept between runs (lab.sh up boots it again after an engine restart). No lab: a cold
# deploy. A kept lab: one deploy.sh lab, which converges (same release) or rolls out this
# checkout's release. That a re-run changes nothing is proved once, on the production code path
# (scripts/rehearsal.sh step 6: tofu plan clean, 0 changed tasks on every host), and per role by
# molecule's idempotence; a third proof here cost ~290 s of a cold CI's critical time.
# deployed: both gateways have a release (asked of the hosts themselves: a fresh clone has no
# vault password for the kept lab until deploy.sh's preflight writes it, so Ansible cannot ask yet).
deployed() {
  local h
  for h in gw-a gw-b; do in_lab "$h" test -L /opt/nanogridata/gateway/current || return 1; done
}
"$LAB_SH" up >/dev/null || fail "lab.sh up failed"
if ! deployed; then
  timed "deploy.sh lab (cold)" ./scripts/deploy.sh lab --yes || fail "deploy.sh lab failed"
else
  timed "deploy.sh lab (lab kept)" ./scripts/deploy.sh lab --yes || fail "deploy.sh lab on the kept lab failed"
fi
V1=$(current_release)
[[ -n "$V1" && "$V1" != MIXED:* ]] || fail "after deploy.sh the gateways do not run one release: '$V1'"
log "first release: $V1"
PROBE_SIM="/opt/nanogridata/probe/$V1/venv/bin/nanogridata-sim"
in_lab sim test -x "$PROBE_SIM" || fail "deploy.sh did not install the probe simulator on the sim host (group devices)"
SECRET_HEX=$("$LAB_SH" secret gateway-model-0x10 | sha256sum | cut -d' ' -f1)
VIP=$(ops_inventory_var lab gw-a ngd_vip)
DEVICE_PORT=$(ops_port ngd_device_port)

sim() {  # sim ARGS...: the simulator on the sim host (group devices) against the VIP, JSON report on stdout
  in_lab sim env NANOGRIDATA_SECRET_MODEL_10="$SECRET_HEX" "$PROBE_SIM" --host "$VIP" \
    --port "$DEVICE_PORT" --model 0x10 --json --state-file /var/tmp/ngd-ci-sim-state.json "$@"
}

# traffic_start NAME: back-to-back 8 s simulator runs (5 devices, 25 frames/s) until
# traffic_stop; at most 90 runs (~15 min: a rolling deploy on a loaded 2-core machine took 6 min
# of roll-out, and the traffic must outlast it). Each run's report is one line of $WORK/NAME.jsonl.
traffic_start() {
  rm -f "$TRAFFIC_STOP" "$WORK/$1.jsonl" "$WORK/$1.capped"
  (
    for ((i = 0; i < 90; i++)); do
      [[ -e "$TRAFFIC_STOP" ]] && exit 0
      # The drain ends once every frame is acknowledged; its bound is for a starved machine, where a
      # device can need several reconnects to a gateway that is restarting.
      sim --devices 5 --device-base $((2000000 + i * 10)) --rate 25 --duration 8 --drain 60 \
        >>"$WORK/$1.jsonl" 2>>"$WORK/$1.err" || true
    done
    touch "$WORK/$1.capped"  # the change outlasted the traffic: its end was not under load
  ) &
  TRAFFIC_PID=$!
  sleep 3  # the first run is connected before the change starts
}
# traffic_stop NAME: stop after the running round; fail unless every frame sent was acknowledged.
traffic_stop() {
  touch "$TRAFFIC_STOP"
  wait "$TRAFFIC_PID" || true
  [[ ! -e "$WORK/$1.capped" ]] || fail "the traffic during $1 ended (90 runs) before $1 did: raise the cap"
  python3 - "$WORK/$1.jsonl" "$1" <<'PY' || fail "traffic during $1 left frames unacknowledged or got bad ACKs (above; $(tail -3 "$WORK/$1.err" 2>/dev/null))"
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip().startswith("{")]
sent = sum(r["sent"] for r in runs)
acked = sum(r["acked"] for r in runs)
lost = sum(r["lost"] for r in runs)
bad = sum(r["bad_acks"] + r["unexpected_acks"] for r in runs)
print(f"traffic during {sys.argv[2]}: {len(runs)} runs, sent {sent}, acked {acked}, lost {lost}, bad acks {bad}, "
      f"reconnects {sum(r['reconnects'] for r in runs)}")
for r in runs:
    if r["lost"] or r["bad_acks"] or r["unexpected_acks"]:
        keys = ("sent", "acked", "lost", "busy", "stale", "invalid", "reconnects", "ack_timeouts",
                "connect_failures", "duration_s", "waiting_devices")
        print("  failed run:", json.dumps({k: r.get(k) for k in keys}))
sys.exit(0 if runs and acked > 0 and lost == 0 and bad == 0 else 1)
PY
}

# --- 2. rolling deploy of a new version under traffic -----------------------------------------
V2="${V1%%+*}+ci.$(date -u +%Y%m%d%H%M%S)"
traffic_start rolling-deploy
# --gateway-only and no testinfra: step 1 converged and verified this very configuration; what is
# measured here is the gateways' roll-out under traffic (the end-to-end probe still runs).
timed "deploy.sh lab --version (rolling)" env NGD_DEPLOY_SKIP_TESTINFRA=1 \
  ./scripts/deploy.sh lab --version "$V2" --gateway-only --yes || fail "the rolling deploy of $V2 failed"
traffic_stop rolling-deploy
[[ "$(current_release)" == "$V2" ]] || fail "after the rolling deploy the gateways do not run $V2"

# --- 3. rollback under traffic -------------------------------------------------------------------
./scripts/rollback.sh lab --list
./scripts/rollback.sh lab --to no-such-release --yes >/dev/null 2>&1 && fail "rollback.sh accepted a release that is not installed"
traffic_start rollback
# No --to: the target comes from the release history, as at 3 a.m.
timed "rollback.sh lab" ./scripts/rollback.sh lab --yes || fail "the rollback failed"
traffic_stop rollback
[[ "$(current_release)" == "$V1" ]] || fail "after the rollback the gateways do not run $V1"
# Again: PREVIOUS_RELEASE now names $V2, the release rolled back from; following it would deploy
# the bad release again. The second rollback must change nothing.
./scripts/rollback.sh lab --yes 2>&1 | tee "$WORK/rollback2.log" || fail "the second rollback failed"
grep -q "nothing to roll back" "$WORK/rollback2.log" || fail "the second rollback did something (above)"
[[ "$(current_release)" == "$V1" ]] || fail "after the second rollback the gateways do not run $V1"

# --- 3b. monitoring of the deployed lab -------------------------------------------------------
# Right after two traffic phases, so the rate() windows of every panel have data.
PROM_URL="http://127.0.0.1:$(ops_port ngd_prometheus_port)"
read -r -d '' TARGETS_DOWN_PY <<'PY' || true
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
if not targets:
    print("no active scrape target at all")
for t in targets:
    if t["health"] != "up":
        labels = t["labels"]
        print(f"{labels['job']} {labels.get('instance')}: {t['health']} {t.get('lastError', '')}")
PY
targets_down() {  # the scrape targets that are not up, one "job instance: health last error" a line
  in_lab mon curl -fsS "$PROM_URL/api/v1/targets?state=active" | python3 -c "$TARGETS_DOWN_PY"
}
check_monitoring() {
  local down="" i
  # A target of a node restarted by the rollback may need one scrape interval to come back.
  for ((i = 0; i < 30; i++)); do
    down=$(targets_down) || down="Prometheus on mon does not answer $PROM_URL/api/v1/targets"
    [[ -z "$down" ]] && break
    sleep 2
  done
  [[ -z "$down" ]] || { printf '%s\n' "$down" >&2; warn "Prometheus scrape targets not up (above)"; return 1; }
  ok "every Prometheus scrape target on mon is up ($(in_lab mon curl -fsS "$PROM_URL/api/v1/query?query=count(up%3D%3D1)" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["result"][0]["value"][1])') targets)"
  # The panel queries from mon, where Grafana runs: its datasources are Prometheus there and
  # VictoriaMetrics on the collector (the collector's firewall admits mon, not this machine).
  local dir=/var/tmp/ngd-ci-grafana
  tar -C "$REPO_ROOT/grafana" -cf - tools/check_queries.py dashboards ci/empty-in-healthy-lab.txt \
    | "$LAB_SH" shell mon sh -c "rm -rf $dir && mkdir -p $dir && tar -C $dir -xf -" \
    || { warn "could not copy the dashboards to mon"; return 1; }
  in_lab mon python3 "$dir/tools/check_queries.py" --dashboards "$dir/dashboards" --prometheus "$PROM_URL" \
    --victoriametrics "http://$(ops_inventory_var lab collector ngd_private_ip):$(ops_port ngd_victoriametrics_port)" \
    --allow-empty-file "$dir/ci/empty-in-healthy-lab.txt" \
    || { warn "a Grafana panel query failed or returned no data (FAIL lines above)"; return 1; }
}
timed "monitoring check (targets, panel queries)" check_monitoring || fail "monitoring of the deployed lab is not complete (above)"

# --- 4. backup / restore drill -------------------------------------------------------------------
# scripts/ops/backup_drill.sh: backup.sh lab under write load (secrets encrypted to a throw-away
# age key), a corrupted copy refused, the gateways' state, gw-b's secrets and the collector's data
# destroyed, restore.sh timed (the RTO), then 0 frames lost of those acknowledged before the spool
# snapshot, old frames refused as duplicates, the secrets back. It prints its figures.
timed "backup drill (backup under load, restore)" ./scripts/ops/backup_drill.sh || fail "the backup/restore drill failed (above)"

print_timings
