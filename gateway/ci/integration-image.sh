#!/usr/bin/env bash
# Gateway integration stage: the container image (gateway/Dockerfile), built from the local base
# image (the lab's debootstrap image: nothing is pulled) and run for real. Checks that it runs as
# the non-root user, becomes ready, acknowledges signed frames from the simulator (through a port
# published on 127.0.0.1 only), persists its spool on the volume, and exits 0 on SIGTERM (docker stop).
set -euo pipefail

usage() {
  cat <<USAGE
Usage: ${0##*/}   (run by ./scripts/test.sh --component gateway --stage integration)

Builds gateway/Dockerfile with gateway/tools/build-image.sh --base <lab host image>, runs it with a
throw-away config and secret, sends 200 frames with nanogridata-sim and stops it.
The container is named ngd-ci-gateway-image (a stale one from a killed run is removed first).
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

REPO_ROOT="${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
# shellcheck source=/dev/null  # common.sh lives at the repository root, checked on its own
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
# shellcheck source=/dev/null  # ops_port: the one reader of ports.yml for scripts
source "$REPO_ROOT/scripts/ops/lib.sh"

NAME=ngd-ci-gateway-image
TAG=ngd-ci-gateway:test
ensure_docker
"$DOCKER" rm -f "$NAME" >/dev/null 2>&1 || true

base=$("$REPO_ROOT/scripts/lab.sh" image | tail -1)
log "building $TAG from the local base $base"
build_log=$(mktemp)
"$REPO_ROOT/gateway/tools/build-image.sh" --base "$base" --tag "$TAG" >"$build_log" 2>&1 \
  || { tail -30 "$build_log"; die "the gateway image did not build (log above)"; }
rm -f "$build_log"
# The previous build of this tag is now dangling: remove it (our label only).
"$DOCKER" image prune -f --filter dangling=true --filter label=io.nanogridata.component=gateway >/dev/null

work=$(mktemp -d)
cleanup() {
  "$DOCKER" rm -f "$NAME" >/dev/null 2>&1 || true
  "$DOCKER" volume rm -f "$NAME-data" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
# The ports the image EXPOSEs (ansible/group_vars/all/ports.yml is their source of truth).
data_port=$(ops_port ngd_gateway_data_port) http_port=$(ops_port ngd_gateway_metrics_port)
cat >"$work/gateway.toml" <<TOML
# Throw-away config of the image test: the image's own defaults for paths, a jsonl sink on the volume.
[server]
data_host = "0.0.0.0"
data_port = $data_port
metrics_host = "0.0.0.0"
metrics_port = $http_port
proxy_protocol = "off"
rate_limit_per_s = 0
[state]
dir = "/var/lib/nanogridata"
[models."0x10"]
[spool]
path = "/var/lib/nanogridata/spool.db"
dead_letter_dir = "/var/lib/nanogridata/dead-letters"
[sinks.audit]
type = "jsonl"
path = "/var/lib/nanogridata/records.jsonl"
[routes]
TELEMETRY = ["audit"]
EVENT = ["audit"]
CONFIG = ["audit"]
COMMAND = ["local"]
TOML
chmod 0644 "$work/gateway.toml"

log "running $TAG (ports published on 127.0.0.1 only)"
"$DOCKER" run -d --name "$NAME" --label io.nanogridata.ci=gateway-image \
  -e NANOGRIDATA_SECRET_MODEL_10="$secret" \
  -v "$work/gateway.toml:/etc/nanogridata/gateway.toml:ro" -v "$NAME-data:/var/lib/nanogridata" \
  -p "127.0.0.1::$data_port" -p "127.0.0.1::$http_port" "$TAG" >/dev/null
[[ "$("$DOCKER" inspect -f '{{.Config.User}}' "$TAG")" == nanogridata ]] || die "the image's USER is not nanogridata"
host_port() { "$DOCKER" port "$NAME" "$1/tcp" | head -1 | sed 's/.*://'; }
dp=$(host_port "$data_port") hp=$(host_port "$http_port")

for ((i = 0; i < 60; i++)); do
  curl -fsS "http://127.0.0.1:$hp/ready" >/dev/null 2>&1 && break
  [[ "$("$DOCKER" inspect -f '{{.State.Running}}' "$NAME")" == true ]] \
    || { "$DOCKER" logs "$NAME" 2>&1 | tail -20; die "the gateway container exited before it was ready"; }
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$hp/ready" >/dev/null || { "$DOCKER" logs "$NAME" 2>&1 | tail -20; die "the gateway container never became ready"; }

uid=$("$DOCKER" exec "$NAME" sh -c 'id -u')
[[ "$uid" != 0 ]] || die "the gateway in the image runs as root"
[[ "$("$DOCKER" top "$NAME" -o pid,user,args | awk 'NR>1 && /nanogridata-gateway/ {print $2}' | sort -u)" != root ]] \
  || die "the gateway process runs as root"

report=$(python3 -m nanogridata_gateway.sim --host 127.0.0.1 --port "$dp" --devices 4 --rate 100 \
  --duration 5 --max-frames 200 --secret-hex "$secret" --json | tail -1)
python3 - "$report" <<'PY' || die "the simulator's frames were not all acknowledged by the image: $report"
import json, sys
r = json.loads(sys.argv[1])
sys.exit(0 if r["acked_ok"] == 200 and r["lost"] == 0 else 1)
PY

stored() { "$DOCKER" exec "$NAME" sh -c 'cat /var/lib/nanogridata/records.jsonl 2>/dev/null | wc -l'; }
for ((i = 0; i < 40; i++)); do [[ "$(stored)" -ge 200 ]] && break; sleep 0.5; done
[[ "$(stored)" -eq 200 ]] || die "expected the 200 acknowledged records in the sink on the volume, found $(stored)"

t=$SECONDS
"$DOCKER" stop -t 30 "$NAME" >/dev/null
code=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$NAME")
[[ "$code" == 0 ]] || { "$DOCKER" logs "$NAME" 2>&1 | tail -20; die "SIGTERM: the gateway exited $code, not 0"; }
ok "gateway image: non-root (uid $uid), ready, 200/200 frames acknowledged and stored, SIGTERM -> exit 0 in $((SECONDS - t))s"
