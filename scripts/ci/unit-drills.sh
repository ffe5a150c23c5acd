#!/usr/bin/env bash
# Unit hook of the failover drills: the sink count, the VIP timeline, the targets and drill.sh's
# command line (bad input fails with a message naming the option), the Alertmanager gate against a
# real Alertmanager (Debian's, on loopback). No lab needed.
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
help_from_header "$@"
cd "$REPO_ROOT"
# shellcheck source=prometheus/ci/lib.sh
source "$REPO_ROOT/prometheus/ci/lib.sh"
prom_tools  # alertmanager and amtool for test_gate_silences.py
pytest -q -p no:cacheprovider scripts/drills/tests || die "drills unit tests failed"
