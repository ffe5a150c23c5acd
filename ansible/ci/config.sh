#!/usr/bin/env bash
# Config stage of ansible/: every playbook passes --syntax-check, and every template the roles
# apply is rendered for the lab's hosts (ansible/ci/render/render.sh --play nodes) and loaded by its
# own tool: nft -c (firewall), nginx -t (nginx stream), keepalived -t (keepalived),
# nanogridata-gateway check-config (gateway config + secrets). Runs in a private network
# namespace with an eth0 of its own, so nothing is sent anywhere.
#   ./scripts/test.sh --component ansible --stage config
set -euo pipefail
# shellcheck source=SCRIPTDIR/../../scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

case "${1:-}" in
  -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
esac

# nginx-light + stream module, keepalived, nftables: only their checkers are used. Debian's
# policy-rc.d may start daemons on install elsewhere: stop only what this install started.
ensure_apt nginx-light libnginx-mod-stream keepalived nftables iproute2 util-linux
require_cmd ansible-playbook "the tool venv provides it"
require_cmd nanogridata-gateway "the tool venv installs the gateway package"

export ANSIBLE_CONFIG="$REPO_ROOT/ansible/ansible.cfg" ANSIBLE_ROLES_PATH="$REPO_ROOT/ansible/roles"
cd "$REPO_ROOT"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
scripts/lab.sh inventory --lab lab --subnet 172.30.53.0/24 >"$out/hosts.yml"

log "ansible-playbook --syntax-check of every playbook"
for playbook in ansible/site.yml ansible/deploy.yml ansible/rollback.yml; do
  [[ -f "$playbook" ]] || die "$playbook is missing"
  # (The roll-out plays' groups are made at run time: their "no hosts matched" warnings are noise.)
  ansible-playbook -i "$out/hosts.yml" --syntax-check "$playbook" >/dev/null 2>"$NGD_CACHE/syntax.err" \
    || { cat "$NGD_CACHE/syntax.err" >&2; die "$playbook fails --syntax-check"; }
done

secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
# An IPv6 device network besides the lab's own: the firewall's ip6 rules render and load too.
device_cidrs='{"ngd_device_cidrs": "{{ ngd_lab_device_cidrs + [\"fd00:53::/64\"] }}"}'
log "rendering and checking every node's configuration (output: $out)"
# unshare -n: a fresh network namespace; keepalived -t wants the VRRP interface (eth0) to exist.
# shellcheck disable=SC2016 # $1, $2 and $3 expand in the inner bash
if ! unshare -n bash -c '
    set -euo pipefail
    ip link set lo up
    ip link add eth0 type veth peer name eth0-peer
    ip link set eth0 up
    ansible/ci/render/render.sh --play nodes --out "$1" -e render_secret="$2" -e "$3"' \
    _ "$out" "$secret" "$device_cidrs" >"$out/render.log" 2>&1; then
  head -n 60 "$out/render.log" >&2
  die "a rendered config failed its check (above)"
fi

# The checks above must also fail when a config is broken: prove each checker rejects one.
log "checking that each checker rejects a broken file"
sed 's/policy drop;/policy sometimes;/' "$out/gw-a/nftables.conf" >"$out/bad.nft"
! nft -c -f "$out/bad.nft" 2>/dev/null || die "nft -c accepted a broken ruleset"
sed 's/proxy_connect_timeout 1s;/proxy_connect_timeout;/' "$out/gw-a/nginx-local_first.conf" >"$out/bad-nginx.conf"
! nginx -t -q -c "$out/bad-nginx.conf" 2>/dev/null || die "nginx -t accepted a broken config"
sed 's/priority 150/priority 300/' "$out/gw-a/keepalived.conf" >"$out/bad-keepalived.conf"
# shellcheck disable=SC2016 # $1 expands in the inner bash
! unshare -n bash -c 'ip link add eth0 type veth peer name eth0-peer; ip link set eth0 up;
    ansible/roles/keepalived/files/keepalived-config-test "$1"' _ "$out/bad-keepalived.conf" 2>/dev/null \
  || die "keepalived-config-test accepted priority 300"
sed 's/^data_port = .*/data_port = "five"/' "$out/gw-a/gateway.toml" >"$out/bad-gateway.toml"
! nanogridata-gateway check-config --config "$out/bad-gateway.toml" >/dev/null 2>&1 \
  || die "check-config accepted data_port = \"five\""

grep -q 'backup;' "$out/gw-a/nginx-local_first.conf" || die "local_first: the peer is not a backup upstream"
grep -q 'least_conn;' "$out/gw-a/nginx-least_conn.conf" || die "least_conn mode renders no least_conn"
grep -q '^  nopreempt' "$out/gw-a/keepalived.conf" || die "gw-a (highest priority) lacks nopreempt"
! grep -q '^  nopreempt' "$out/gw-b/keepalived.conf" || die "gw-b (lower priority) has nopreempt"
ok "ansible: playbooks parse; nftables, nginx, keepalived and gateway configs load in their tools"
