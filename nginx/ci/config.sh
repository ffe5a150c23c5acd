#!/usr/bin/env bash
# Config stage of nginx/: nginx.conf.j2 as the nginx_stream role renders it (render.sh --play nginx)
# run by a real nginx (nginx-light + libnginx-mod-stream) in a private network namespace: PROXY
# protocol to the local gateway, the peer masking a dead local one, least_conn spreading,
# stub_status, keepalive closing a device gone without a FIN, the per-address limit (nginx/tests/).
#   ./scripts/test.sh --component nginx --stage config
set -euo pipefail
# shellcheck source=SCRIPTDIR/../../scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

case "${1:-}" in
  -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
esac

ensure_apt nginx-light libnginx-mod-stream util-linux iproute2
require_cmd pytest "the tool venv provides it"
cd "$REPO_ROOT"
# unshare -n: nothing leaves this namespace, and the test ports cannot collide with anything.
unshare -n bash -c 'ip link set lo up && python3 -m pytest -q -p no:cacheprovider nginx/tests' \
  || die "nginx stream behaviour tests failed (above)"
ok "nginx: stream config behaves as designed under a real nginx"
