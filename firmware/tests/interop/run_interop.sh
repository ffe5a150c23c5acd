#!/usr/bin/env bash
# Interop: the host build of the firmware client against a real `nanogridata-gateway serve` on
# 127.0.0.1 (throw-away secret, temporary state). 16-byte tags on model 0x10 and 32-byte tags on
# the "high" model 0x30: N frames -> N OK ACKs; then K ACKs lost + forced disconnect -> K
# DUPLICATEs on retransmission. The gateway's own /metrics must agree with the client's counts.
set -euo pipefail
# shellcheck source=../../../scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/lib/common.sh"

FRAMES=10000
LOST=50
TIMEOUT_S=180
BUILD="${NGD_CHECKOUT_CACHE}/firmware-build/interop"

usage() {
  cat <<USAGE
Usage: ${0##*/} [--frames N] [--lost K] [--timeout S] [--build DIR]

Builds firmware/tests/interop/interop_client (host, CMake), starts nanogridata-gateway on free
loopback ports with a generated secret, and runs the client for model 0x10 (16-byte tags, N
frames) and model 0x30 (security = "high", 32-byte tags, N/10 frames).
  --frames N    frames that must be answered OK (default $FRAMES)
  --lost K      ACKs thrown away before a forced disconnect, then expected DUPLICATE (default $LOST, <= 64)
  --timeout S   bound for each client run (default $TIMEOUT_S)
  --build DIR   CMake build directory (default \$NGD_CHECKOUT_CACHE/firmware-build/interop)
USAGE
}

while (($#)); do
  case "$1" in
    --frames) FRAMES="${2:?}"; shift 2 ;;
    --lost) LOST="${2:?}"; shift 2 ;;
    --timeout) TIMEOUT_S="${2:?}"; shift 2 ;;
    --build) BUILD="${2:?}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ "$FRAMES" =~ ^[0-9]+$ && "$LOST" =~ ^[0-9]+$ && "$LOST" -le 64 ]] || die "--frames/--lost must be integers, --lost <= 64"
require_cmd nanogridata-gateway "activate the tool venv (scripts/test.sh does) or pip install -e gateway"
require_cmd cmake

log "building the interop client"
cmake -S "$REPO_ROOT/firmware" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DNGD_WITH_MBEDTLS=OFF >/dev/null \
  || die "cmake configure failed"
cmake --build "$BUILD" -j2 --target interop_client >"$BUILD.log" 2>&1 || { cat "$BUILD.log" >&2; die "interop_client build failed"; }
client="$BUILD/tests/interop_client"

work=$(mktemp -d "${TMPDIR:-/tmp}/ngd-interop.XXXXXX")
gateway_pid=""
cleanup() {
  if [[ -n "$gateway_pid" ]] && kill -0 "$gateway_pid" 2>/dev/null; then
    kill -TERM "$gateway_pid" 2>/dev/null || true
    wait "$gateway_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
data_port=$(free_port)
metrics_port=$(free_port)
[[ "$data_port" != "$metrics_port" ]] || metrics_port=$(free_port)
secret_10=$(nanogridata-gateway keygen)
secret_30=$(nanogridata-gateway keygen)

cat >"$work/gateway.toml" <<TOML
[server]
data_host = "127.0.0.1"
data_port = $data_port
metrics_host = "127.0.0.1"
metrics_port = $metrics_port
proxy_protocol = "off"
rate_limit_per_s = 0          # one device sends 10,000 frames as fast as ACKs come back
[state]
dir = "$work/state"
[log]
level = "warning"
[models."0x10"]
name = "esp32-pressure"
[models."0x30"]
name = "asic-multisensor"
security = "high"
[spool]
path = "$work/state/spool.db"
dead_letter_dir = "$work/state/dead-letters"
[sinks.capture]
type = "jsonl"
path = "$work/records.jsonl"
[routes]
TELEMETRY = ["capture"]
EVENT = ["capture"]
CONFIG = ["capture"]
COMMAND = ["local"]
TOML
( umask 077; printf '[models."0x10"]\nmaster_secret = "%s"\n[models."0x30"]\nmaster_secret = "%s"\n' \
    "$secret_10" "$secret_30" >"$work/secrets.toml" )
mkdir -p "$work/state"
nanogridata-gateway check-config -c "$work/gateway.toml" --secrets "$work/secrets.toml" >/dev/null \
  || die "the interop gateway config was rejected (see above)"

log "starting nanogridata-gateway on 127.0.0.1:$data_port (metrics :$metrics_port)"
nanogridata-gateway serve -c "$work/gateway.toml" --secrets "$work/secrets.toml" >"$work/gateway.log" 2>&1 &
gateway_pid=$!
ready=0
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$metrics_port/ready', timeout=1).status == 200 else 1)" 2>/dev/null; then
    ready=1; break
  fi
  kill -0 "$gateway_pid" 2>/dev/null || { cat "$work/gateway.log" >&2; die "the gateway exited during start-up"; }
  sleep 0.2
done
((ready)) || { tail -20 "$work/gateway.log" >&2; die "the gateway was not ready within 20 s"; }

run_device() { # run_device MODEL DEVICE SECRET FRAMES [--tag32]
  local model=$1 device=$2 secret=$3 frames=$4; shift 4
  local key
  key=$(nanogridata-gateway derive-key --model "$model" --device "$device" --secret-hex "$secret")
  log "device $device (model $model${1:+, $1}): $frames frames, then $LOST lost ACKs"
  timeout $((TIMEOUT_S + 10)) "$client" --port "$data_port" --model "$model" --device "$device" \
    --key "$key" --check-secret "$secret" --frames "$frames" --lost "$LOST" --timeout "$TIMEOUT_S" "$@" \
    || { tail -20 "$work/gateway.log" >&2; die "interop failed for device $device (model $model)"; }
}
run_device 0x10 4242 "$secret_10" "$FRAMES"
run_device 0x30 4243 "$secret_30" $((FRAMES / 10)) --tag32

# A device with the wrong key must get no answer at all: the client times out, the gateway counts
# MAC failures.
log "device 4244 (model 0x10) with a wrong key: expecting silence"
wrong_key=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
if timeout 30 "$client" --port "$data_port" --model 0x10 --device 4244 --key "$wrong_key" \
    --frames 5 --lost 0 --timeout 3 >"$work/wrong-key.log" 2>&1; then
  die "a client with a wrong key got its frames acknowledged"
fi
grep -q "timed out with 5 frame(s) unacknowledged" "$work/wrong-key.log" \
  || { cat "$work/wrong-key.log" >&2; die "the wrong-key client failed for another reason than silence"; }

# The gateway's side of the story must match the client's.
metrics=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$metrics_port/metrics', timeout=5).read().decode())")
sum_metric() { # sum_metric NAME LABEL_REGEX
  awk -v name="$1" -v re="$2" '$1 ~ "^"name"\\{" && $1 ~ re { s += $2 } END { printf "%d\n", s }' <<<"$metrics"
}
mac_failures=$(sum_metric nanogridata_mac_failures_total '.')
log "gateway /metrics: $mac_failures MAC failures (expected >= 5, from the wrong-key device)"
((mac_failures >= 5)) || die "the gateway did not count the wrong-key frames as MAC failures"
ok_acks=$(sum_metric nanogridata_frames_acked_total 'status="ok"')
dup_acks=$(sum_metric nanogridata_frames_acked_total 'status="duplicate"')
expected_ok=$((FRAMES + FRAMES / 10 + 2 * LOST)) # the K "lost" frames were stored and acked OK once
expected_dup=$((2 * LOST))
log "gateway /metrics: $ok_acks OK ACKs (expected $expected_ok), $dup_acks DUPLICATE (expected $expected_dup)"
[[ "$ok_acks" == "$expected_ok" && "$dup_acks" == "$expected_dup" ]] || die "the gateway's ACK counters disagree with the clients"

kill -TERM "$gateway_pid"
rc=0
wait "$gateway_pid" || rc=$?
gateway_pid=""
((rc == 0)) || die "the gateway exited $rc on SIGTERM"
ok "interop passed: C client <-> Python gateway, $FRAMES + $((FRAMES / 10)) frames OK, $expected_dup DUPLICATEs after forced disconnects"
