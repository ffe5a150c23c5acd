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
COMPONENTS=(gateway firmware terraform prometheus grafana nginx keepalived ansible scripts molecule docs)

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
when any hook failed, naming it. Hooks listed in scripts/ci/quarantine.txt (with the reason they
are not yet trusted) are skipped and named loudly at the end, unless --quarantined is given.
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
for hook in "${hooks[@]}"; do
  stage=${hook##*/}; stage=${stage%.sh}; stage=${stage%%-*}
  banner "$hook"
  t=$SECONDS
  if (cd "$REPO_ROOT" && bash "$hook"); then
    status=ok; passed=$((passed + 1))
  else
    status=FAILED; failed+=("$hook"); stage_status[$stage]=FAILED
  fi
  stage_secs[$stage]=$(( ${stage_secs[$stage]:-0} + SECONDS - t ))
  results+=("$(printf '%-32s %-7s %5ds' "$hook" "$status" "$((SECONDS - t))")")
  if [[ $status == FAILED ]]; then
    warn "$hook failed"
    ((fail_fast)) && break
  fi
done

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
