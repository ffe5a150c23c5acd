#!/usr/bin/env bash
# Config stage of prometheus/: render the lab and a production-shaped environment with the roles
# (ansible/ci/render/render.sh), load each file with its own tool (promtool check config, amtool check-config, blackbox --config.check), then
# run the node job + rules in a real Prometheus and the inhibitions in a real Alertmanager (loopback).
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
source "$REPO_ROOT/prometheus/ci/lib.sh"
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  echo "Usage: ${0##*/}   (promtool check config, amtool check-config, blackbox --config.check, inhibition test)"; exit 0
fi
cd "$REPO_ROOT"
prom_tools
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT

# lab: the lab's hosts and settings, with the TLS probe on (its branch of prometheus.yml.j2).
# production-pd: the other receiver integrations (PagerDuty, e-mail); throw-away values, not secrets.
for env in lab production production-pd; do
  case $env in
    lab) prom_render "$out/$env" -e ngd_device_tls_enabled=true ;;
    production) prom_render "$out/$env" --env production ;;
    production-pd) prom_render "$out/$env" --env production -e ngd_alert_pagerduty_routing_key=0123456789abcdef0123456789abcdef \
      -e ngd_alert_email_to=oncall@example.test -e ngd_alert_email_from=alertmanager@example.test \
      -e ngd_alert_email_smarthost=127.0.0.1:25 ;;
  esac
  log "$env: promtool check config (with the rendered rules)"
  promtool check config "$out/$env/prometheus.yml" >/dev/null || die "$env: promtool check config failed"
  log "$env: amtool check-config"
  amtool check-config "$out/$env/alertmanager.yml" >/dev/null || die "$env: amtool check-config failed"
done

log "blackbox_exporter --config.check"
prometheus-blackbox-exporter --config.file=prometheus/blackbox.yml --config.check 2>&1 | tail -1 \
  | grep -q 'Config file is ok' || die "blackbox.yml rejected by blackbox_exporter --config.check"

log "rendered node job + rules in a real Prometheus (127.0.0.1, fake textfile targets)"
python3 prometheus/tools/scrape_test.py "$out/lab" || die "scrape/relabel test failed"

log "inhibition rules against a real Alertmanager (127.0.0.1, temporary storage)"
python3 prometheus/tools/inhibition_test.py "$out/lab/alertmanager.yml" || die "inhibition test failed"
ok "prometheus config checks passed"
