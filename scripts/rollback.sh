#!/usr/bin/env bash
# Roll the gateways of an environment back to an installed release (ansible/rollback.yml: VIP
# backup first, drain, health gates, stop on failure), then verify end to end.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$REPO_ROOT/scripts/lib/toolenv.sh"
source "$REPO_ROOT/scripts/ops/lib.sh"

usage() {
  cat <<USAGE
Usage: ${0##*/} ENV [--to VERSION] [--list] [--yes]

  --list         list the releases installed on every gateway (install time, current, previous)
  --to VERSION   roll back to VERSION (default: the release the gateways ran before the last
                 deploy; once rolled back, a second run stays there: going further back takes --to)
  --yes          no confirmation (production otherwise asks to type its name)
  -h, --help     this help

Refuses a release that is not installed on every gateway. Configs are part of the release
record: the gateway config is rendered and checked for the release it returns to.
Every run writes logs/rollback-ENV-<UTC time>.log.
USAGE
}

ENV_NAME="" TARGET="" LIST=0
while (($#)); do
  case "$1" in
    --to) TARGET="${2:?--to needs a VERSION (see --list)}"; shift 2 ;;
    --to=*) TARGET="${1#*=}"; shift ;;
    --list) LIST=1; shift ;;
    --yes|-y) export ASSUME_YES=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [[ -z "$ENV_NAME" ]] || die "one environment only (got '$ENV_NAME' and '$1')"; ENV_NAME=$1; shift ;;
  esac
done
[[ -n "$ENV_NAME" ]] || { usage >&2; die "missing ENV (lab, staging or production)"; }
ops_check_env "$ENV_NAME"
[[ -z "$TARGET" || "$TARGET" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || die "--to '$TARGET': not a release name (see --list)"
INVENTORY=$(ops_inventory "$ENV_NAME")
T_START=$SECONDS

toolenv_activate
[[ -f "$INVENTORY" ]] || die "no inventory at ${INVENTORY#"$REPO_ROOT"/}: deploy first (scripts/deploy.sh $ENV_NAME)"
STATUS_JSON=$(mktemp)
trap 'rm -f "$STATUS_JSON" "$STATUS_JSON.log"' EXIT

if ((LIST)); then
  ops_status "$ENV_NAME" "$STATUS_JSON" || die "could not read the gateways' release state"
  python3 - "$STATUS_JSON" <<'PY'
import json, sys
status = json.load(open(sys.argv[1]))
for host, h in sorted(status.items()):
    print(f"{host}{'  (VIP holder)' if h['vip'] else ''}")
    for r in reversed(h["releases"]):
        mark = "current " if r["name"] == h["current"] else ("previous" if r["name"] == h["previous"] else "        ")
        note = "" if r["installed"] else "  (incomplete: not usable)"
        print(f"  {mark}  {r['time']}  {r['name']}{note}")
PY
  exit 0
fi

ops_log_start rollback "$ENV_NAME"
ops_steps 4

step "choose the release"
ops_status "$ENV_NAME" "$STATUS_JSON" || die "could not read the gateways' release state"
if [[ -z "$TARGET" ]]; then
  # From the release history, not PREVIOUS_RELEASE alone: after a rollback that names the release
  # rolled back from, and following it would deploy the bad release again.
  target_rc=0
  TARGET=$(python3 "$OPS_DIR/release_target.py" "$STATUS_JSON") || target_rc=$?
  case $target_rc in
    0) ;;
    3)
      ok "every gateway already runs $TARGET, the release before the newest one installed: nothing to roll back (going further back takes --to VERSION, see --list)"
      exit 0 ;;
    *) die "no release to roll back to (above): name one with --to (see ${0##*/} $ENV_NAME --list)" ;;
  esac
fi
absent_on=$(ops_status_field "$STATUS_JSON" "' '.join(sorted(n for n, h in s.items() if not any(r['name'] == '$TARGET' and r['installed'] for r in h['releases'])))")
[[ -z "$absent_on" ]] || die "release $TARGET is not installed on: $absent_on (see ${0##*/} $ENV_NAME --list)"
current=$(ops_status_field "$STATUS_JSON" "','.join(sorted({h['current'] for h in s.values()}))")
[[ "$current" != "$TARGET" ]] || die "$TARGET already runs on every gateway: nothing to roll back"
log "rolling back $current -> $TARGET"
[[ "$ENV_NAME" == production ]] && confirm "Roll PRODUCTION back to $TARGET." production

step "roll back (ansible/rollback.yml)"
ops_playbook "$ENV_NAME" "$REPO_ROOT/ansible/rollback.yml" -e "gateway_release=$TARGET" \
  || die "rollback.yml failed (above); the node that failed keeps the release it had"

step "verify end to end"
probe_device=$((3000000000 + $(date +%s) % 1000000000))
ops_playbook "$ENV_NAME" "$OPS_DIR/verify.yml" -e "ngd_release=$TARGET" -e "ngd_probe_device=$probe_device" \
  || die "rolled back to $TARGET but the end-to-end probe failed (above)"

step "summary"
ops_status "$ENV_NAME" "$STATUS_JSON" || die "could not read the gateways' release state"
steps_done
banner "rolled back $ENV_NAME"
python3 - "$STATUS_JSON" "$TARGET" <<'PY' || die "a gateway does not run $TARGET after the rollback"
import json, sys
status, target = json.load(open(sys.argv[1])), sys.argv[2]
bad = []
for host, h in sorted(status.items()):
    print(f"  node {host:9} release {h['current']}  ready {'yes' if h['ready'] else 'NO'}{'  VIP holder' if h['vip'] else ''}")
    if h["current"] != target or not h["ready"]:
        bad.append(host)
sys.exit(1 if bad else 0)
PY
ops_timings
printf '  %-10s %ds\n  %-10s %s\n' time "$((SECONDS - T_START))" log "${OPS_LOG#"$REPO_ROOT"/}"
ok "rollback $ENV_NAME to $TARGET done in $((SECONDS - T_START))s"
