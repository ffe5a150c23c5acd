#!/usr/bin/env bash
# Unit stage of prometheus/: promtool test rules (every alert), conventions + runbook coverage +
# test coverage (tools/check_rules.py), amtool route tests, and the renderer/checker pytest.
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
source "$REPO_ROOT/prometheus/ci/lib.sh"
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  echo "Usage: ${0##*/}   (promtool test rules, runbook coverage, amtool route tests, pytest)"; exit 0
fi
cd "$REPO_ROOT"
prom_tools
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
prom_render "$out"

log "promtool test rules"
(cd "$out/tests" && promtool test rules ./*_test.yml) || die "promtool test rules failed (see above)"

log "alert conventions, runbook links, firing/non-firing/for-edge coverage"
python3 prometheus/tools/check_rules.py "$out" --runbook docs/runbooks/alerts.md \
  --base-url "$(prom_runbook_base)" || die "check_rules failed"

log "amtool config routes test"
python3 prometheus/tools/route_test.py "$out/alertmanager.yml" "$out/rules" 2> >(grep -v '^Warning: --config.file' >&2) \
  || die "Alertmanager routes do not match the severities"

log "pytest prometheus/tests"
python3 -m pytest -q -p no:cacheprovider prometheus/tests || die "pytest prometheus/tests failed"
ok "prometheus unit tests passed"
