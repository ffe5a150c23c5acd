#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR/../..
# Unit stage of terraform/: `tofu test` (mocked hcloud provider) for the module and both
# environments, then the inventory bridge's tests.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
# shellcheck source=terraform/ci/lib.sh
source "$REPO_ROOT/terraform/ci/lib.sh"
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  echo "Usage: ${0##*/}   (tofu test for modules/gateway-pair and environments/*, pytest terraform/tests)"; exit 0
fi
cd "$REPO_ROOT"
tofu_env

for dir in terraform/modules/gateway-pair terraform/environments/staging terraform/environments/production; do
  [[ -d "$dir/tests" ]] || continue
  log "tofu test in $dir"
  tofu_init "$dir"
  tofu -chdir="$dir" test -no-color || die "tofu test failed in $dir"
  rm -rf "$TF_DATA_DIR"
done

log "pytest terraform/tests"
python -m pytest -q -p no:cacheprovider terraform/tests || die "terraform bridge tests failed"
ok "terraform unit tests passed"
