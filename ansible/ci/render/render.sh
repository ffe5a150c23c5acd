#!/usr/bin/env bash
# Render the roles' templates with Ansible itself, for the tests that load the files: the one
# renderer of prometheus.yml, alertmanager.yml, the rules, nginx.conf, keepalived.conf, nftables
# and gateway.toml. The hosts are the lab's (scripts/lab.sh inventory: scripts/lab/hosts.tsv on the
# lab "lab"'s subnet) with the lab's group_vars; nothing is contacted (connection local).
#   ansible/ci/render/render.sh --out DIR [--play monitoring|nginx|nodes] [--env lab|production] [-e VARS]...
# --play monitoring (default): prometheus/, alertmanager and grafana datasources files, flat in DIR.
# --play nginx: nginx.conf of the first gateway per variant (render_variants, see nginx.yml).
# --play nodes: every node's nftables, nginx, keepalived and gateway files in DIR/<host>/, each
#   checked by its own tool (needs them installed; ansible/ci/config.sh runs it in a namespace).
# --env production: the same hosts as a production environment (ansible/ci/render/production.yml).
# -e: ansible-playbook extra vars (KEY=VALUE, JSON or @FILE), applied last. On a refused input the
# failed check's message is printed and the exit status is 1. DIR/inventory.yml: the hosts used.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../../../scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}/scripts/lib/common.sh"

RENDER_DIR="$REPO_ROOT/ansible/ci/render"
# The lab "lab"'s subnet: the addresses in the rendered files are the ones its hosts get.
RENDER_SUBNET=172.30.53.0/24

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
out="" play=monitoring env=lab extra=()
while (($#)); do
  case "$1" in
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --play) play="${2:?--play needs monitoring, nginx or nodes}"; shift 2 ;;
    --env) env="${2:?--env needs lab or production}"; shift 2 ;;
    -e) extra+=(-e "${2:?-e needs KEY=VALUE, JSON or @FILE}"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; echo "render.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ -n "$out" ]] || { usage >&2; echo "render.sh: --out DIR is required" >&2; exit 2; }
case "$play" in
  monitoring|nginx|nodes) ;;
  *) echo "render.sh: --play '$play': use monitoring, nginx or nodes" >&2; exit 2 ;;
esac
case "$env" in
  lab) ;;
  production) extra=(-e "@$RENDER_DIR/production.yml" "${extra[@]}") ;;
  *) echo "render.sh: --env '$env': use lab or production" >&2; exit 2 ;;
esac
require_cmd ansible-playbook "the tool venv provides it (scripts/requirements.txt)"

mkdir -p "$out"
out=$(cd "$out" && pwd)
inv=$(mktemp -d)
trap 'rm -rf "$inv"' EXIT
"$REPO_ROOT/scripts/lab.sh" inventory --lab lab --subnet "$RENDER_SUBNET" >"$inv/hosts.yml"
# The lab's settings, without its secrets (render_secret stands in for them).
cp "$inv/hosts.yml" "$out/inventory.yml"
mkdir -p "$inv/group_vars/all"
ln -s "$REPO_ROOT/ansible/inventories/lab/group_vars/all/main.yml" "$inv/group_vars/all/main.yml"

export ANSIBLE_CONFIG="$REPO_ROOT/ansible/ansible.cfg" ANSIBLE_ROLES_PATH="$REPO_ROOT/ansible/roles"
export ANSIBLE_NOCOLOR=1 ANSIBLE_LOCALHOST_WARNING=0
# shellcheck disable=SC2016 # Ansible expands ansible_playbook_python
if ! ansible-playbook -i "$inv/hosts.yml" "$RENDER_DIR/$play.yml" --tags render \
    -e ansible_connection=local -e '{"ansible_python_interpreter": "{{ ansible_playbook_python }}"}' \
    -e render_dir="$out" "${extra[@]}" >"$inv/ansible.log" 2>&1; then
  # The failed task and its message (an assert's fail_msg names the variable and the fix).
  grep -E -A12 '^(fatal|failed):' "$inv/ansible.log" >&2 || tail -n 30 "$inv/ansible.log" >&2
  echo "render.sh: rendering with ansible/ci/render/$play.yml failed (above)" >&2
  exit 1
fi
