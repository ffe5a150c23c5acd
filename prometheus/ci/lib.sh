# shellcheck shell=bash
# Helpers shared by prometheus/ci/*.sh. Source after scripts/lib/common.sh.

PROM_DIR="$REPO_ROOT/prometheus"

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

# prom_render OUT [render.sh options...]: the monitoring files as the roles render them (Ansible,
# ansible/ci/render/render.sh: the lab's hosts; --env production, -e KEY=VALUE), in OUT, with the
# rules dir pointing at OUT/rules so `promtool check config` loads the rules too.
prom_render() {
  local out=$1
  shift
  "$REPO_ROOT/ansible/ci/render/render.sh" --out "$out" -e "ngd_prometheus_rules_dir=$out/rules" "$@" >/dev/null \
    || die "rendering the monitoring files with ansible/ci/render/render.sh $* failed (above)"
}

# The runbook base URL the files render with (prometheus/defaults.yml).
prom_runbook_base() {
  python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["ngd_runbook_base_url"])' \
    "$PROM_DIR/defaults.yml"
}
