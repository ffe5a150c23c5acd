#!/usr/bin/env bash
# Backup/restore drill on a deployed lab (scripts/deploy.sh lab first), measured:
#   1. devices send frames through the VIP (back-to-back simulator runs of 4 s, each with its own
#      devices) while `backup.sh lab --age-recipient` runs (a throw-away age key);
#   2. a corrupted copy of the backup is refused by restore.sh before anything is touched;
#   3. the gateways' replay state and spool, gw-b's secrets and the collector's data are destroyed;
#   4. `restore.sh lab BACKUP --identity KEY --yes`, timed: its duration, end-to-end probe included,
#      is the RTO printed at the end;
#   5. checks: gw-b's secrets are the backed-up ones; frames sent before the backup are refused as
#      duplicates (replay state back); every frame of a simulator run that had ended, all frames
#      acknowledged, before the first gateway's spool snapshot began is at the sink (0 lost: in
#      the collector's snapshot, or re-delivered from a restored spool); frames acknowledged after
#      it are the RPO window, counted and printed.
# Lab only (it destroys state). Usage: scripts/ops/backup_drill.sh [--help]
# Environment: NGD_LAB / NGD_LAB_SUBNET as for scripts/lab.sh; NGD_BACKUP_DRILL_WORK: keep the
# working files (backup, key, reports) there instead of a removed temporary directory.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/lib/common.sh"
help_from_header "$@"
(($# == 0)) || { echo "ERROR: unexpected argument: $1 (see --help)" >&2; exit 2; }
source "$REPO_ROOT/scripts/lib/toolenv.sh"
source "$REPO_ROOT/scripts/ops/lib.sh"
source "$REPO_ROOT/scripts/ops/backup_checks.sh"
cd "$REPO_ROOT"

LAB_SH="$REPO_ROOT/scripts/lab.sh"
in_lab() { "$LAB_SH" shell "$@" </dev/null; }
fail() { die "backup drill: $*"; }
ensure_apt age
toolenv_activate
[[ -f "$(ops_inventory lab)" ]] || fail "no lab inventory: run scripts/deploy.sh lab first"

if [[ -n "${NGD_BACKUP_DRILL_WORK:-}" ]]; then
  WORK=$NGD_BACKUP_DRILL_WORK
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d)
fi
STOP="$WORK/stop-load"
LOAD_PID=""
cleanup() {
  touch "$STOP"
  [[ -z "$LOAD_PID" ]] || wait "$LOAD_PID" 2>/dev/null || true
  [[ -n "${NGD_BACKUP_DRILL_WORK:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

release=$(in_lab gw-a readlink /opt/nanogridata/gateway/current) || fail "no gateway release on gw-a"
release=$(basename "$release")
PROBE_SIM="/opt/nanogridata/probe/$release/venv/bin/nanogridata-sim"
in_lab sim test -x "$PROBE_SIM" || fail "no probe simulator $PROBE_SIM on the sim host"
SECRET_HEX=$("$LAB_SH" secret gateway-model-0x10 | sha256sum | cut -d' ' -f1)
VIP=$(ops_inventory_var lab gw-a ngd_vip)
DEVICE_PORT=$(ops_port ngd_device_port)
VM_PORT=$(ops_port ngd_victoriametrics_port)
sim() {  # sim ARGS...: the release's simulator on the sim host against the VIP, JSON report
  in_lab sim env NANOGRIDATA_SECRET_MODEL_10="$SECRET_HEX" "$PROBE_SIM" --host "$VIP" \
    --port "$DEVICE_PORT" --model 0x10 --json --state-file /var/tmp/ngd-backup-drill-sim.json "$@"
}
# VM export of the pressure points ("*_p": one per frame) of a device-id regex since START.
vm_export() {  # vm_export DEVICE_REGEX START
  local query
  query=$(python3 -c 'import sys, urllib.parse as u; print(u.urlencode({"match[]": "{__name__=~\".*_p\",device=~\"%s\"}" % sys.argv[1], "start": sys.argv[2]}))' "$1" "$2")
  in_lab collector curl -fsS --max-time 20 "http://127.0.0.1:$VM_PORT/api/v1/export?$query"
}
T_DRILL=$(date +%s)

# --- a replay reference: frames whose replay marks must come back ---------------------------------
REPLAY_DEVICE=$((1000000 + T_DRILL % 1000000)) REPLAY_SEQ=$T_DRILL
first=$(sim --devices 1 --device-base "$REPLAY_DEVICE" --seq-start "$REPLAY_SEQ" --max-frames 3 --rate 10 --duration 5)
sim_all_acked "$first" 3 || fail "the reference frames were not all accepted: $first"

# --- 1. backup under write load -----------------------------------------------------------------
# Each run: 5 devices of its own (ids BASE+run*10 ..+4), 25 frames/s for 4 s, then its report and
# the time it ended (all its ACKs in) as one JSON line of load.jsonl. At most 60 runs.
LOAD_BASE=$((2000000000 + (T_DRILL % 100000) * 1000))
rm -f "$STOP" "$WORK/load.jsonl"
(
  for ((i = 0; i < 60; i++)); do
    [[ -e "$STOP" ]] && exit 0
    report=$(sim --devices 5 --device-base $((LOAD_BASE + i * 10)) --rate 25 --duration 4 --drain 10 2>>"$WORK/load.err" \
      | grep '^{' | tail -1) || true
    [[ "$report" == "{"* ]] || report='{"sent": 0, "acked": 0, "lost": 0}'
    python3 -c 'import json, sys, time; r = json.loads(sys.argv[1]); r.update(run=int(sys.argv[2]), base=int(sys.argv[3]), ended=time.time()); print(json.dumps(r))' \
      "$report" "$i" "$((LOAD_BASE + i * 10))" >>"$WORK/load.jsonl"
  done
) &
LOAD_PID=$!
for ((i = 0; i < 120; i++)); do [[ -s "$WORK/load.jsonl" ]] && break; sleep 1; done
[[ -s "$WORK/load.jsonl" ]] || fail "the first load run did not finish within 120 s ($(tail -3 "$WORK/load.err" 2>/dev/null))"

age-keygen -o "$WORK/key.txt" 2>/dev/null
RECIPIENT=$(age-keygen -y "$WORK/key.txt")
BACKUP_ROOT="$WORK/backups"
t=$SECONDS
NGD_BACKUP_ROOT="$BACKUP_ROOT" ./scripts/backup.sh lab --age-recipient "$RECIPIENT" || fail "backup.sh lab failed"
BACKUP_S=$((SECONDS - t))
touch "$STOP"
wait "$LOAD_PID" || true
LOAD_PID=""
BACKUP=$(find "$BACKUP_ROOT/lab" -maxdepth 1 -name '*.tar.age' | head -1)
[[ -n "$BACKUP" && -f "$BACKUP.sha256" ]] || fail "backup.sh wrote no sealed archive under $BACKUP_ROOT/lab"

# The spool snapshots' start times: the frames acknowledged before the earliest are in the backup.
mkdir -p "$WORK/peek"
age -d -i "$WORK/key.txt" "$BACKUP" | tar -C "$WORK/peek" -xf - --wildcards '*/MANIFEST'
T_SNAP=$(cat "$WORK"/peek/*/gw-*/MANIFEST | sed -n 's/^spool_snapshot_unix=//p' | sort -n | head -1)
[[ -n "$T_SNAP" ]] || fail "no spool_snapshot_unix in the gateways' MANIFEST: no spool was snapshotted"
for h in gw-a gw-b; do
  manifest_gateway_ok "$(echo "$WORK"/peek/*/"$h"/MANIFEST)" || fail "$h: its backup is incomplete (above)"
done
ok "backup under load: $(du -h "$BACKUP" | cut -f1) sealed in ${BACKUP_S}s; spool snapshots from $(date -u -d "@${T_SNAP%.*}" +%T)"

# --- 2. a corrupted copy is refused -------------------------------------------------------------
cp "$BACKUP" "$WORK/corrupt.tar.age"
printf '%s  corrupt.tar.age\n' "$(cut -d' ' -f1 "$BACKUP.sha256")" >"$WORK/corrupt.tar.age.sha256"
printf 'x' >>"$WORK/corrupt.tar.age"
./scripts/restore.sh lab "$WORK/corrupt.tar.age" --identity "$WORK/key.txt" --yes >"$WORK/corrupt.log" 2>&1 \
  && fail "restore.sh accepted a backup whose checksum does not match"
grep -q "does not match its .sha256" "$WORK/corrupt.log" \
  || fail "restore.sh refused the corrupted copy, but not for its checksum: $(tail -3 "$WORK/corrupt.log")"

# --- 3. destroy ---------------------------------------------------------------------------------
secret_sum() { in_lab "$1" sha256sum /etc/nanogridata/secrets.toml | cut -d' ' -f1; }
sum_before=$(secret_sum gw-b)
log "destroying the gateways' replay state and spool, gw-b's secrets and the collector's data"
for h in gw-a gw-b; do
  in_lab "$h" sh -c 'systemctl stop nanogridata-gateway && rm -rf /var/lib/nanogridata/*'
done
in_lab gw-b rm -f /etc/nanogridata/secrets.toml
in_lab collector sh -c 'systemctl stop victoria-metrics && rm -rf /var/lib/victoria-metrics/* && systemctl start victoria-metrics'
for ((i = 0; i < 60; i++)); do vm_export "$REPLAY_DEVICE" "$T_DRILL" >/dev/null 2>&1 && break; sleep 1; done
[[ -z "$(vm_export "$REPLAY_DEVICE" "$T_DRILL")" ]] || fail "the collector still has device $REPLAY_DEVICE after its data was destroyed"

# --- 4. restore, timed ----------------------------------------------------------------------------
t=$SECONDS
./scripts/restore.sh lab "$BACKUP" --identity "$WORK/key.txt" --yes || fail "restore.sh lab failed"
RTO_S=$((SECONDS - t))

# --- 5. checks ------------------------------------------------------------------------------------
[[ "$(secret_sum gw-b)" == "$sum_before" ]] || fail "gw-b's secrets are not the backed-up ones after the restore"
again=$(sim --devices 1 --device-base "$REPLAY_DEVICE" --seq-start "$REPLAY_SEQ" --max-frames 3 --rate 10 --duration 5)
sim_all_refused "$again" 3 || fail "after the restore (above)"

# Acknowledged before the snapshot -> at the sink. The restored spools deliver what they owed
# within seconds; the deadline is generous for a starved machine.
read -r -d '' ACCOUNT_PY <<'PY' || true
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
t_snap = float(sys.argv[2])
export = sys.stdin.read()
stored: dict[int, set[int]] = {}
for line in export.splitlines():
    if line.strip():
        row = json.loads(line)
        stored.setdefault(int(row["metric"]["device"]), set()).update(row["timestamps"])
def at_sink(run): return sum(len(stored.get(run["base"] + d, ())) for d in range(5))
before = [r for r in runs if r["ended"] < t_snap]
after = [r for r in runs if r["ended"] >= t_snap]
acked_before = sum(r["acked"] for r in before)
missing = sum(max(0, r["acked"] - at_sink(r)) for r in before)
window_acked = sum(r["acked"] for r in after)
window_stored = sum(min(r["acked"], at_sink(r)) for r in after)
print(json.dumps({"runs_before": len(before), "acked_before": acked_before, "missing": missing,
                  "runs_in_window": len(after), "window_acked": window_acked,
                  "window_at_sink": window_stored, "sent": sum(r["sent"] for r in runs),
                  "acked": sum(r["acked"] for r in runs)}))
PY
# Every load device: LOAD_BASE (a multiple of 1000) + 0..599.
regex="${LOAD_BASE%???}[0-5][0-9][0-9]"
account=""
for ((i = 0; i < 60; i++)); do
  account=$(vm_export "$regex" "$T_DRILL" | python3 -c "$ACCOUNT_PY" "$WORK/load.jsonl" "$T_SNAP") || account=""
  [[ -n "$account" ]] && python3 -c 'import json,sys; a=json.loads(sys.argv[1]); sys.exit(0 if a["missing"] == 0 else 1)' "$account" && break
  sleep 2
done
[[ -n "$account" ]] || fail "could not read the load's points from VictoriaMetrics"
printf '%s\n' "$account" >"$WORK/account.json"
python3 - "$account" <<'PY' || fail "frames acknowledged before the backup are missing after the restore (above)"
import json, sys
a = json.loads(sys.argv[1])
print(f"load: {a['sent']} frames sent, {a['acked']} acknowledged; acknowledged before the spool snapshot "
      f"({a['runs_before']} runs): {a['acked_before']}, missing after the restore: {a['missing']}")
print(f"RPO window (acknowledged after the snapshot began, {a['runs_in_window']} runs): "
      f"{a['window_acked']} frames, {a['window_at_sink']} of them at the sink anyway")
sys.exit(0 if a["runs_before"] > 0 and a["acked_before"] > 0 and a["missing"] == 0 else 1)
PY
ok "backup/restore drill: secrets, replay state and every frame acknowledged before the backup are back"
printf 'backup (under load): %ds, %s sealed\nRTO (restore.sh, end-to-end probe included): %ds\n' \
  "$BACKUP_S" "$(du -h "$BACKUP" | cut -f1)" "$RTO_S"
