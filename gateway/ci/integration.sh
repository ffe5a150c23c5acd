#!/usr/bin/env bash
# Gateway integration stage: the delivery guarantee against real parts. VictoriaMetrics (Debian
# package) is started by the tests themselves on loopback, with a temporary storage directory,
# and stopped in teardown; the end-to-end drills run the real `serve` process and the simulator.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: ${0##*/}   (run by ./scripts/test.sh --component gateway --stage integration)

Runs the pytest tests marked 'integration' under gateway/tests (VictoriaMetrics exactly-N,
outage drill, simulator -> gateway -> VictoriaMetrics, kill -9 mid-load).
Environment: NGD_VM_OUTAGE_S (default 60) seconds VictoriaMetrics stays down in the outage drill.
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

REPO_ROOT="${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
# shellcheck source=/dev/null  # common.sh lives at the repository root, checked on its own
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

require_cmd pytest "the tool venv provides it (gateway[dev])"
ensure_apt victoria-metrics
export NGD_REQUIRE_VM=1 # a missing binary fails the stage instead of skipping the tests
cd "$REPO_ROOT/gateway"
log "pytest -m integration (VictoriaMetrics outage ${NGD_VM_OUTAGE_S:-60}s)"
basetemp="$(mktemp -d)"
trap 'rm -rf "$basetemp"' EXIT
timeout 900 pytest -p no:cacheprovider --basetemp "$basetemp" --durations=5 -m integration tests \
  || die "gateway integration tests failed"
# A smoke run of the product benchmark against its echo floor only (short cells, few
# connections): the driver and the load generator work end to end; the figures are not judged.
log "bench_pipeline.py --quick --servers echo (smoke)"
timeout 120 python3 bench/bench_pipeline.py --quick --servers echo --no-pin \
  || die "the benchmark smoke run failed"
# And its loss check against the deployed gateway: SIGKILL mid-window, restart on the same spool,
# every frame ACKed OK before the kill must reach VictoriaMetrics (a loss fails it).
log "bench_pipeline.py --quick --servers gateway --scenarios kill-10k (0 acknowledged frames lost)"
timeout 300 python3 bench/bench_pipeline.py --quick --servers gateway --scenarios kill-10k --no-pin \
  || die "the benchmark's kill -9 loss check failed"
ok "gateway integration tests passed"
