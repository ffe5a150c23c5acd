#!/usr/bin/env bash
# Gateway unit stage: pytest over gateway/tests (vectors, properties, fuzz, real-TCP server tests,
# config, simulator) and go test over the benchmark's load generator. Hypothesis runs the bounded
# "ci" profile; the fuzz run is bounded too.
set -euo pipefail
# shellcheck source=/dev/null  # common.sh lives at the repository root, checked on its own
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

usage() { echo "Usage: ${0##*/}   (run by ./scripts/test.sh --component gateway --stage unit)"; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

require_cmd pytest "the tool venv provides it (gateway[dev])"
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
export NGD_FUZZ_ITERATIONS="${NGD_FUZZ_ITERATIONS:-20000}"
# keep hypothesis' example database and pytest's cache out of the source tree
export HYPOTHESIS_STORAGE_DIRECTORY="$NGD_CACHE/hypothesis"
# A private base temp dir: pytest's shared /tmp/pytest-of-<user> keeps only the last 3 runs, so a
# concurrent pytest of another component could delete our directories mid-run.
basetemp="$(mktemp -d)"
trap 'rm -rf "$basetemp"' EXIT
cd "$REPO_ROOT/gateway"
log "ingest tests (hypothesis profile $HYPOTHESIS_PROFILE, fuzz iterations $NGD_FUZZ_ITERATIONS)"
timeout 600 pytest -q -p no:cacheprovider --basetemp "$basetemp/ingest" --durations=5 tests --ignore=tests/delivery \
  || die "gateway ingest unit tests failed (or timed out)"
if [[ -d tests/delivery ]]; then
  log "delivery tests (those marked integration run in ci/integration.sh)"
  timeout 600 pytest -q -p no:cacheprovider --basetemp "$basetemp/delivery" --durations=5 -m "not integration" \
    tests/delivery \
    || die "gateway delivery unit tests failed (or timed out)"
fi
GO="$(command -v go || echo /usr/local/go/bin/go)"
[[ -x "$GO" ]] || die "Go not found (PATH or /usr/local/go/bin): gateway/bench/loadgen needs it"
log "go test (gateway/bench/loadgen: frame encoding and ACK verification against docs/protocol-vectors.json)"
(cd bench/loadgen && "$GO" mod download -x && timeout 600 "$GO" test ./...) \
  || die "gateway/bench/loadgen go test failed"
ok "gateway unit tests passed"
