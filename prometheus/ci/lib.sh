# shellcheck shell=bash
# Helpers shared by prometheus/ci/*.sh. Source after scripts/lib/common.sh.

PROM_DIR="$REPO_ROOT/prometheus"
# shellcheck disable=SC2034 # used by the hooks that source this file
LAB_INVENTORY="$PROM_DIR/tests/fixtures/lab-inventory.yml"
# shellcheck disable=SC2034
PROD_INVENTORY="$PROM_DIR/tests/fixtures/production-inventory.yml"

# prom_tools: promtool, amtool, alertmanager and blackbox_exporter from Debian. Their packages try
# to start daemons; where nothing prevents that (no policy-rc.d), stop what the install started.
prom_tools() {
  local pkgs=(prometheus prometheus-alertmanager prometheus-blackbox-exporter) fresh=() p svc
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || fresh+=("$p")
  done
  ensure_apt "${pkgs[@]}"
  for svc in "${fresh[@]}"; do
    if [[ -x /etc/init.d/$svc ]]; then as_root "/etc/init.d/$svc" stop >/dev/null 2>&1 || true; fi
  done
  require_cmd promtool "Debian package prometheus"
  require_cmd amtool "Debian package prometheus-alertmanager"
}

# prom_render OUT [INVENTORY] [KEY=VALUE...]: render every template into OUT (rules dir pointing
# at OUT/rules so `promtool check config` loads the rules too).
prom_render() {
  local out=$1 inventory=${2:-$LAB_INVENTORY} sets=() kv
  shift $(($# < 2 ? $# : 2))
  for kv in "$@"; do sets+=(--set "$kv"); done
  python3 "$PROM_DIR/tools/render.py" --inventory "$inventory" --out "$out" \
    --set "ngd_prometheus_rules_dir=$out/rules" "${sets[@]}" >/dev/null \
    || die "rendering prometheus/ templates with $inventory failed"
}

# The runbook base URL the lab fixture renders with (prometheus/defaults.yml).
prom_runbook_base() {
  python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["ngd_runbook_base_url"])' \
    "$PROM_DIR/defaults.yml"
}
