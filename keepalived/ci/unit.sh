#!/usr/bin/env bash
# keepalived unit stage: pytest over keepalived/tests (notify metrics, the hcloud hook against the
# Hetzner Cloud API twin (hcloud_twin/), the real keepalived binary in a private network namespace).
# Runs twice: on the tool venv (hcloud-python 2.x from PyPI) and on Debian's python3 with
# python3-hcloud 1.18, the library production hosts use.
set -euo pipefail
# shellcheck source=/dev/null  # common.sh lives at the repository root, checked on its own
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

usage() { echo "Usage: ${0##*/}   (run by ./scripts/test.sh --component keepalived --stage unit)"; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

KA="$REPO_ROOT/keepalived"
# keepalived for `keepalived -t` and the daemon tests; iproute2 + util-linux (unshare) for the
# private network namespace; python3-hcloud is what production's /usr/bin/python3 imports;
# python3-aiohttp serves the API twin in-process when the hook tests run on Debian's python3.
ensure_apt keepalived iproute2 util-linux python3-hcloud python3-aiohttp python3-venv
require_cmd keepalived
require_cmd unshare

log "pytest (tool venv: $(python -c 'import hcloud._version as v; print("hcloud", v.__version__)'))"
(cd "$KA" && python -m pytest) || die "keepalived tests failed (tool venv)"

# Debian's interpreter and library, plus pytest only: a small venv that sees the system packages.
deb_venv="$NGD_CACHE/keepalived-debian-py"
if [[ ! -f "$deb_venv/.complete" ]]; then
  log "creating $deb_venv (Debian python3 + system site-packages + pytest)"
  rm -rf "$deb_venv"
  /usr/bin/python3 -m venv --system-site-packages "$deb_venv" || die "python3 -m venv failed"
  "$deb_venv/bin/pip" install -q 'pytest>=9,<10' || die "pip install pytest failed"
  touch "$deb_venv/.complete"
fi
log "pytest hcloud hook against the twin (Debian python3-hcloud $(dpkg-query -W -f='${Version}' python3-hcloud))"
(cd "$KA" && "$deb_venv/bin/python" -m pytest tests/test_hcloud_hook.py) \
  || die "keepalived hcloud tests failed on Debian's python3-hcloud"
ok "keepalived unit tests passed"
