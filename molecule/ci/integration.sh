#!/usr/bin/env bash
# Integration stage of molecule/: the roles' scenarios, one after the other (they share the lab
# subnet 172.30.55.0/24), each create -> converge -> idempotence -> verify -> destroy, with the
# converge and idempotence times measured. The lab's own smoke scenario runs from
# scripts/ci/integration.sh, not here.
#   ./scripts/test.sh --component molecule --stage integration
#   NGD_MOLECULE_SCENARIOS="firewall keepalived" (or "all") bash molecule/ci/integration.sh
set -euo pipefail
# shellcheck source=SCRIPTDIR/../../scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

ALL_SCENARIOS=(firewall nginx_stream keepalived gateway monitoring ha-pair)
# CI runs the scenarios that together converge every role of site.yml, each with idempotence and
# its testinfra checks: firewall; keepalived (common, node_exporter, nginx_stream, keepalived on
# the pair); gateway (gateway, backup); monitoring (victoriametrics, prometheus, alertmanager,
# grafana). Not in the default: nginx_stream (one node; its role is converged, re-run and
# verified on the pair by keepalived) and ha-pair (site.yml on all four, ~460 s: the deploy hook,
# scripts/ci/integration-deploy.sh, converges the same site.yml on the same hosts, asserts that a
# re-run on a new lab changes nothing, and runs the same testinfra suite). On 2 cores,
# create..destroy with modules pipelined, each default scenario takes about 100-150 s, the four
# about 530 s.
DEFAULT_SCENARIOS=(firewall keepalived gateway monitoring)

case "${1:-}" in
  -h|--help) sed -n '2,8p' "$0"; printf 'Default scenarios: %s (all: %s)\n' "${DEFAULT_SCENARIOS[*]}" \
    "${ALL_SCENARIOS[*]}"; exit 0 ;;
esac

require_cmd molecule "the tool venv provides it (scripts/requirements.txt)"
require_cmd docker "scripts/lab.sh installs and starts the Docker engine"
read -r -a scenarios <<<"${NGD_MOLECULE_SCENARIOS:-${DEFAULT_SCENARIOS[*]}}"
[[ "${scenarios[*]}" == all ]] && scenarios=("${ALL_SCENARIOS[@]}")
for scenario in "${scenarios[@]}"; do
  [[ -f "$REPO_ROOT/molecule/$scenario/molecule.yml" ]] || die "no scenario molecule/$scenario"
done

cd "$REPO_ROOT"
mkdir -p logs
timings="$REPO_ROOT/logs/molecule-timings.tsv"
printf 'scenario\tconverge_s\tidempotence_s\tverify_s\ttotal_s\tresult\n' >"$timings"
current=""
cleanup() {
  if [[ -n "$current" ]]; then molecule destroy -s "$current" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

ensure_docker
# Molecule labs (m-<scenario>) left by a killed run hold the shared scenario subnets: remove them
# all first, never any other lab (lab, deploy, ci, ... are not ours to touch here).
for stale in $("$DOCKER" network ls --filter label=io.nanogridata.lab \
  --format '{{.Label "io.nanogridata.lab"}}' | grep '^m-' || true); do
  warn "removing the stale molecule lab $stale"
  "$REPO_ROOT/scripts/lab.sh" down --lab "$stale" >/dev/null
done

failed=()
for scenario in "${scenarios[@]}"; do
  banner "molecule scenario $scenario"
  current=$scenario
  log_file="logs/molecule-$scenario.log"
  t0=$SECONDS result=ok conv=- idem=- ver=-
  run_step() {  # run_step STEP: molecule STEP, output to the scenario's log; returns its seconds
    local t=$SECONDS
    if ! molecule "$1" -s "$scenario" >>"$log_file" 2>&1; then
      warn "$scenario: molecule $1 failed (log: $log_file)"
      tail -n 40 "$log_file" >&2
      return 1
    fi
    step_seconds=$((SECONDS - t))
  }
  : >"$log_file"
  if run_step destroy && run_step syntax && run_step create && run_step converge; then
    conv=$step_seconds
    # Verify also after a failed idempotence: both verdicts are worth having from one slow run.
    if run_step idempotence; then idem=$step_seconds; else result=FAILED; fi
    if run_step verify; then ver=$step_seconds; else result=FAILED; fi
  else
    result=FAILED
  fi
  molecule destroy -s "$scenario" >>"$log_file" 2>&1 || warn "$scenario: destroy failed"
  current=""
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$conv" "$idem" "$ver" "$((SECONDS - t0))" "$result" >>"$timings"
  if [[ $result == ok ]]; then
    ok "$scenario: converge ${conv}s, idempotence ${idem}s, verify ${ver}s, total $((SECONDS - t0))s"
  else
    failed+=("$scenario")
  fi
done

banner "molecule timings (logs/molecule-timings.tsv)"
column -t -s $'\t' "$timings"
printf '%d passed, %d failed\n' "$((${#scenarios[@]} - ${#failed[@]}))" "${#failed[@]}"
((${#failed[@]} == 0)) || die "molecule scenarios failed: ${failed[*]} (logs/molecule-<scenario>.log)"
