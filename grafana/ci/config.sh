#!/usr/bin/env bash
# Config stage of grafana/: every panel query of every dashboard through the query API of a real
# Prometheus and a real VictoriaMetrics (Debian packages, started here on 127.0.0.1 with throw-away
# storage, stopped on exit). VictoriaMetrics gets one device point in the gateway sink's Influx
# line format, so the Telemetry queries must return data; Prometheus has no gateway data here, so
# its queries must only parse and run (the lab check with data: grafana/tools/check_queries.py).
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  echo "Usage: ${0##*/}   (dashboard queries against local Prometheus + VictoriaMetrics)"; exit 0
fi
cd "$REPO_ROOT"
ensure_apt prometheus victoria-metrics
require_cmd prometheus; require_cmd victoria-metrics

tmp=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() {  # URL WHAT
  local i
  for ((i = 0; i < 100; i++)); do
    curl -fsS -o /dev/null -m 1 "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  die "$2 did not answer on $1"
}

prom_port=$(free_port); vm_port=$(free_port)
printf 'global: {scrape_interval: 1s}\nscrape_configs: [{job_name: prometheus, static_configs: [{targets: ["127.0.0.1:%s"]}]}]\n' \
  "$prom_port" >"$tmp/prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prom" \
  --web.listen-address="127.0.0.1:$prom_port" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
victoria-metrics -httpListenAddr="127.0.0.1:$vm_port" -storageDataPath="$tmp/vm" \
  -search.latencyOffset=0s -loggerLevel=ERROR >"$tmp/vm.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$prom_port/-/ready" "prometheus"
wait_http "http://127.0.0.1:$vm_port/health" "victoria-metrics"

# One telemetry point as the gateway's influx_line sink writes it (measurement <prefix>_0x<model>).
curl -fsS -m 5 --data-binary 'nanogridata_0x10,device=ci-device-1,model=0x10 temperature=21.5,battery=3.3' \
  "http://127.0.0.1:$vm_port/write" || die "writing a sample point to victoria-metrics failed"
curl -fsS -m 5 "http://127.0.0.1:$vm_port/internal/force_flush" >/dev/null || true
searchable=0
for ((i = 0; i < 150; i++)); do  # new series become searchable after a moment (30 s: CI is busy)
  if curl -fsS -m 2 -G --data-urlencode 'query=nanogridata_0x10_temperature' \
    "http://127.0.0.1:$vm_port/api/v1/query" 2>/dev/null | grep -q ci-device-1; then
    searchable=1; break
  fi
  sleep 0.2
done
((searchable)) || die "the sample point never became searchable in victoria-metrics"

log "every dashboard query against local Prometheus (must run) and VictoriaMetrics (must return data)"
python3 grafana/tools/check_queries.py --prometheus "http://127.0.0.1:$prom_port" \
  --victoriametrics "http://127.0.0.1:$vm_port" --allow-empty ngd-prometheus \
  || die "a dashboard query failed (see FAIL lines above)"
ok "grafana dashboard queries run"
