#!/usr/bin/env bash
# Gateway config stage: the example config is loaded by the gateway's own checker with
# throw-away secrets; a broken config must fail naming the bad key; the committed protocol
# vectors must match their generator.
set -euo pipefail
# shellcheck source=/dev/null  # common.sh lives at the repository root, checked on its own
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

usage() { echo "Usage: ${0##*/}   (run by ./scripts/test.sh --component gateway --stage config)"; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

require_cmd nanogridata-gateway "the tool venv installs the gateway package"
GW="$REPO_ROOT/gateway"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Throw-away secrets, never written to the tree.
umask 077
{
  for model in 0x10 0x20 0x30; do
    printf '[models."%s"]\nmaster_secret = "%s"\n' "$model" "$(nanogridata-gateway keygen)"
  done
} >"$work/secrets.toml"

log "check-config on gateway/config/gateway.example.toml"
nanogridata-gateway check-config -c "$GW/config/gateway.example.toml" --secrets "$work/secrets.toml" >/dev/null \
  || die "the example config does not pass check-config"

log "check-config on a broken config must name the key"
sed 's/^max_connections = .*/max_connections = "many"/' "$GW/config/gateway.example.toml" >"$work/broken.toml"
if nanogridata-gateway check-config -c "$work/broken.toml" --secrets "$work/secrets.toml" 2>"$work/err"; then
  die "check-config accepted a broken config"
fi
grep -q 'server.max_connections' "$work/err" || die "check-config did not name the bad key: $(cat "$work/err")"

log "check-config refuses a secrets file readable by others"
chmod 644 "$work/secrets.toml"
if nanogridata-gateway check-config -c "$GW/config/gateway.example.toml" --secrets "$work/secrets.toml" 2>"$work/err"; then
  die "check-config accepted a world-readable secrets file"
fi
grep -q 'mode 0644' "$work/err" || die "unexpected error for a world-readable secrets file: $(cat "$work/err")"

log "protocol vectors match their generator"
python3 "$GW/tools/gen_protocol_vectors.py" --check || die "docs/protocol-vectors.json is out of date"
ok "gateway config checks passed"
