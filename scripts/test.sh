#!/usr/bin/env bash
# The single test command (README, .ci/run). Runs every component's stage hooks:
#   <component>/ci/<stage>.sh and <component>/ci/<stage>-<name>.sh, for stage in lint, unit,
#   config, integration
# Each hook runs with the tool venv active and REPO_ROOT set, from the repository root.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$REPO_ROOT/scripts/lib/toolenv.sh"

STAGES=(lint unit config integration)
# Order matters only for speed and readability: cheap, independent components first.
COMPONENTS=(gateway firmware hcloud_twin terraform prometheus grafana nginx keepalived ansible scripts molecule docs)
# Background lanes start as soon as the tool environment is ready, beside the foreground hooks;
# each runs its hooks one after the other. The critical lane (the deploy hook, then the failover
# drills on the lab it leaves: the longest chain) runs at normal priority. The foreground hooks and
# the yielding lanes run at nice $YIELD_NICE, and the yielding lanes' lab hosts (molecule, lab.sh
# checks) get a CPU weight of $YIELD_CPU_SHARES (docker's default is 1024): the drills keep their
# timing targets while the rest takes the CPU they leave idle (2 cores here). Molecule and the
# production rehearsal (the longest hook; its twin's servers take the lane's CPU weight too) have a
# lane each, from the start; the short, mostly waiting hooks (a 60 s collector outage) run in a
# third, beside them. None needs what another hook makes (own labs and subnets, loopback ports;
# the image build, apt and the dockerd start are locked). Lanes are joined (output shown, results
# recorded) at the end.
CRITICAL_LANE=(scripts/ci/integration-deploy.sh scripts/ci/integration-drills.sh)
YIELDING_LANES=(
  "scripts/ci/integration-rehearsal.sh"
  "molecule/ci/integration.sh"
  "gateway/ci/integration.sh scripts/ci/integration.sh"
)
YIELD_NICE=10
YIELD_CPU_SHARES=256

usage() {
  cat <<USAGE
Usage: ${0##*/} [--stage STAGE]... [--component NAME]... [--keep-going|--fail-fast] [--list]

Runs the project's tests by stage: ${STAGES[*]}.
Each stage runs the hooks <component>/ci/<stage>.sh of: ${COMPONENTS[*]}.

  --stage STAGE       run only this stage (repeatable)
  --component NAME    run only this component's hooks (repeatable)
  --fail-fast         stop at the first failed hook (default: run all, then report)
  --quarantined       also run the hooks listed in scripts/ci/quarantine.txt
  --list              print the hooks that would run, and exit
  -h, --help          this help

Prints a banner and the duration of each hook, a timing table at the end, and exits non-zero
when any hook failed, naming it. Background lanes run from the start, beside the other hooks,
each one hook after the other (output printed when joined, at the end):
  critical (normal priority): ${CRITICAL_LANE[*]}
$(for lane in "${YIELDING_LANES[@]}"; do
  echo "  yielding (nice $YIELD_NICE, lab hosts' CPU weight $YIELD_CPU_SHARES): $lane"; done)
When a critical-lane hook is selected, the foreground hooks run at nice $YIELD_NICE.
Hooks listed in scripts/ci/quarantine.txt (with the reason they are not yet trusted) are skipped
and named loudly at the end, unless --quarantined is given.
USAGE
}

want_stages=() want_components=() fail_fast=0 list_only=0 run_quarantined=0
while (($#)); do
  case "$1" in
    --stage) want_stages+=("${2:?--stage needs a value}"); shift 2 ;;
    --component) want_components+=("${2:?--component needs a value}"); shift 2 ;;
    --fail-fast) fail_fast=1; shift ;;
    --keep-going) fail_fast=0; shift ;;
    --quarantined) run_quarantined=1; shift ;;
    --list) list_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
((${#want_stages[@]})) || want_stages=("${STAGES[@]}")
((${#want_components[@]})) || want_components=("${COMPONENTS[@]}")
for s in "${want_stages[@]}"; do
  [[ " ${STAGES[*]} " == *" $s "* ]] || die "unknown stage '$s' (one of: ${STAGES[*]})"
done

# Quarantine: "<hook path> <reason>" per line; '#' starts a comment.
declare -A quarantine=()
while read -r qhook qreason; do
  [[ -z "$qhook" || "$qhook" == \#* ]] && continue
  quarantine[$qhook]=$qreason
done < <(cat "$REPO_ROOT/scripts/ci/quarantine.txt" 2>/dev/null || true)

hooks=() skipped=()
for stage in "${STAGES[@]}"; do
  [[ " ${want_stages[*]} " == *" $stage "* ]] || continue
  for comp in "${COMPONENTS[@]}"; do
    [[ " ${want_components[*]} " == *" $comp "* ]] || continue
    # <stage>.sh first, then <stage>-<name>.sh in name order (a component with several parts).
    for hook in "$REPO_ROOT/$comp/ci/$stage.sh" "$REPO_ROOT/$comp/ci/$stage"-*.sh; do
      [[ -f "$hook" ]] || continue
      hook=${hook#"$REPO_ROOT"/}
      if [[ -n "${quarantine[$hook]:-}" ]] && ((!run_quarantined)); then
        skipped+=("$hook: ${quarantine[$hook]}")
      else
        hooks+=("$hook")
      fi
    done
  done
done
if ((list_only)); then printf '%s\n' "${hooks[@]}"; exit 0; fi
((${#hooks[@]})) || die "no hooks match the selection"

banner "tool environment"
t=$SECONDS
toolenv_activate
toolenv_secs=$((SECONDS - t))
log "tool venv ready in ${toolenv_secs}s: $NGD_VENV"

results=() failed=() passed=0
declare -A stage_secs=() stage_status=()
hook_stage() { local s=${1##*/}; s=${s%.sh}; echo "${s%%-*}"; }
record() {  # record HOOK RC SECONDS [NOTE]
  local stage status=ok
  stage=$(hook_stage "$1")
  if (($2 == 0)); then
    passed=$((passed + 1))
  else
    status=FAILED; failed+=("$1"); stage_status[$stage]=FAILED
    warn "$1 failed"
  fi
  results+=("$(printf '%-32s %-7s %5ds%s' "$1" "$status" "$3" "${4:+  $4}")")
}

# --- background lanes: each its own process group (killed with the run), output to logs/ci/ ------
BG_DIR="$REPO_ROOT/logs/ci"
declare -A lane_of=()  # background hook -> its lane's PID
# shellcheck disable=SC2048,SC2086  # a yielding lane is a space-separated list of hooks
for hook in "${CRITICAL_LANE[@]}" ${YIELDING_LANES[*]}; do lane_of[$hook]=""; done
bg_pending=()  # the selected background hooks, in run order (joined at the end)
for hook in "${hooks[@]}"; do
  [[ -v "lane_of[$hook]" ]] && bg_pending+=("$hook")
done
bg_file() { echo "$BG_DIR/$(tr '/' '_' <<<"${1%.sh}").$2"; }
LANE_PIDS=()
kill_lanes() { local pid; for pid in "${LANE_PIDS[@]}"; do kill -- "-$pid" 2>/dev/null || true; done; }
trap kill_lanes EXIT
if ((${#bg_pending[@]})); then
  ensure_docker  # once, before the lanes and the foreground hooks could all start it
  mkdir -p "$BG_DIR"
fi
# start_lane NAME NICE CPU_SHARES HOOK...: the selected HOOKs, one after the other (CPU_SHARES:
# their lab hosts' CPU weight, empty for docker's default); false when none is selected.
start_lane() {
  local name="$1" niceness="$2" shares="$3" selected=() hook
  shift 3
  for hook; do
    [[ " ${bg_pending[*]} " == *" $hook "* ]] || continue
    selected+=("$hook")
    rm -f "$(bg_file "$hook" log)" "$(bg_file "$hook" rc)" "$(bg_file "$hook" secs)"
  done
  ((${#selected[@]})) || return 1
  # setsid: a process group of its own, so an interrupted run leaves no hook behind.
  # shellcheck disable=SC2016  # expanded by the inner bash
  setsid env ${shares:+"NGD_LAB_CPU_SHARES=$shares"} nice -n "$niceness" bash -c 'cd "$1" && dir=$2 && shift 2
    for hook; do
      name=$(tr / _ <<<"${hook%.sh}") t=$SECONDS rc=0
      bash "$hook" >"$dir/$name.log" 2>&1 || rc=$?
      echo $((SECONDS - t)) >"$dir/$name.secs"
      echo "$rc" >"$dir/$name.rc"
    done' _ "$REPO_ROOT" "$BG_DIR" "${selected[@]}" &
  LANE_PIDS+=("$!")
  for hook in "${selected[@]}"; do lane_of[$hook]=$!; done
  log "$name lane started (nice $niceness): ${selected[*]} (one after the other; output in ${BG_DIR#"$REPO_ROOT"/}/)"
}
for lane in "${YIELDING_LANES[@]}"; do
  # shellcheck disable=SC2086  # a lane is a space-separated list of hooks
  start_lane yielding "$YIELD_NICE" "$YIELD_CPU_SHARES" $lane || true
done
if start_lane critical 0 "" "${CRITICAL_LANE[@]}"; then
  renice -n "$YIELD_NICE" -p $$ >/dev/null  # the foreground hooks yield to the critical lane
fi
bg_join() {  # bg_join HOOK: wait for it, print its output, record it; the wait counts for its stage
  local hook="$1" t=$SECONDS rc stage
  banner "$hook (ran in the background)"
  while [[ ! -e "$(bg_file "$hook" rc)" ]] && kill -0 "${lane_of[$hook]}" 2>/dev/null; do sleep 2; done
  cat "$(bg_file "$hook" log)" 2>/dev/null || true
  rc=$(cat "$(bg_file "$hook" rc)" 2>/dev/null || echo 1)  # no rc: the lane died before it
  stage=$(hook_stage "$hook")
  stage_secs[$stage]=$(( ${stage_secs[$stage]:-0} + SECONDS - t ))
  record "$hook" "$rc" "$(cat "$(bg_file "$hook" secs)" 2>/dev/null || echo 0)" \
    "(background lane; the run waited $((SECONDS - t))s for it)"
}

for hook in "${hooks[@]}"; do
  # A lane hook is joined at the end, never waited for at its place.
  [[ -v "lane_of[$hook]" ]] && continue
  stage=$(hook_stage "$hook")
  banner "$hook"
  t=$SECONDS
  rc=0
  (cd "$REPO_ROOT" && bash "$hook") || rc=$?
  stage_secs[$stage]=$(( ${stage_secs[$stage]:-0} + SECONDS - t ))
  record "$hook" "$rc" "$((SECONDS - t))"
  if ((${#failed[@]})) && ((fail_fast)); then break; fi
done
for hook in "${bg_pending[@]}"; do bg_join "$hook"; done

banner "timings"
printf '%s\n' "${results[@]}"
echo
printf 'tool environment %-15s %-7s %5ds\n' "" ok "$toolenv_secs"
for stage in "${STAGES[@]}"; do
  [[ -n "${stage_secs[$stage]:-}" ]] || continue
  printf 'stage %-26s %-7s %5ds\n' "$stage" "${stage_status[$stage]:-ok}" "${stage_secs[$stage]}"
done
printf 'total %ds\n' "$((SECONDS - _NGD_T0))"
for q in "${skipped[@]}"; do printf '%sQUARANTINED (not run)%s %s\n' "$C_YEL" "$C_OFF" "$q"; done
printf 'hooks: %d passed, %d failed\n' "$passed" "${#failed[@]}"
if ((${#failed[@]})); then
  die "failed: ${failed[*]}"
fi
ok "all hooks passed"
