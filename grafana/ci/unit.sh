#!/usr/bin/env bash
# Unit stage of grafana/: committed dashboards == generator output, uids, datasources, metric names.
# (Every panel query against real data: grafana/tools/check_queries.py, needs the lab; see README.)
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  echo "Usage: ${0##*/}   (generate.py --check, pytest grafana/tests)"; exit 0
fi
cd "$REPO_ROOT"
python3 -c 'import grafana_foundation_sdk' 2>/dev/null \
  || die "grafana-foundation-sdk missing from the tool venv (grafana/requirements-ci.txt)"
log "dashboards: committed JSON == generator output"
python3 grafana/tools/generate.py --check || die "dashboards are stale: run grafana/tools/generate.py"
log "pytest grafana/tests"
python3 -m pytest -q -p no:cacheprovider grafana/tests || die "pytest grafana/tests failed"
ok "grafana unit tests passed"
