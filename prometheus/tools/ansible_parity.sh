#!/usr/bin/env bash
# Render the templates with Ansible's own template module (the way the roles will) and compare
# with tools/render.py's output: the tests run on render.py's files, so the two must not drift.
# Defaults load as role defaults (lowest precedence), ports.yml as vars_files, the inventory as
# given; rules use the [[ ]] variable delimiters. The first line (ansible_managed header) is ignored.
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
usage() { echo "Usage: ${0##*/} INVENTORY   (compare Ansible's template module with prometheus/tools/render.py)"; }
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { usage; exit 0; }
(($# == 1)) || { usage >&2; die "expected one inventory file"; }
inventory=$(realpath "$1")
require_cmd ansible-playbook "the tool venv provides it (scripts/requirements.txt)"

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/roles/monitoring_parity/defaults" "$work/roles/monitoring_parity/tasks" "$work/ansible" "$work/render"
cp "$REPO_ROOT/prometheus/defaults.yml" "$work/roles/monitoring_parity/defaults/main.yml"
{
  echo "---"
  for t in prometheus alertmanager; do
    printf -- '- ansible.builtin.template: {src: "%s", dest: "%s", mode: "0644"}\n' \
      "$REPO_ROOT/prometheus/$t.yml.j2" "$work/ansible/$t.yml"
  done
  printf -- '- ansible.builtin.template: {src: "%s", dest: "%s", mode: "0644"}\n' \
    "$REPO_ROOT/grafana/provisioning/datasources/datasources.yml.j2" "$work/ansible/datasources.yml"
  for rules in "$REPO_ROOT"/prometheus/rules/*.yml; do
    printf -- '- ansible.builtin.template: {src: "%s", dest: "%s", mode: "0644", variable_start_string: "[[", variable_end_string: "]]"}\n' \
      "$rules" "$work/ansible/rules-${rules##*/}"
  done
} >"$work/roles/monitoring_parity/tasks/main.yml"
cat >"$work/play.yml" <<PLAY
---
- name: Render the monitoring templates like the roles do
  hosts: monitoring[0]
  gather_facts: false
  vars_files: ["$REPO_ROOT/ansible/group_vars/all/ports.yml"]
  roles: [monitoring_parity]
PLAY
ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_NOCOLOR=1 ansible-playbook -i "$inventory" -e ansible_connection=local \
  -e "ansible_python_interpreter=$(command -v python3)" "$work/play.yml" >"$work/ansible.log" 2>&1 \
  || { tail -20 "$work/ansible.log" >&2; die "ansible-playbook failed to render the templates"; }

python3 "$REPO_ROOT/prometheus/tools/render.py" --inventory "$inventory" --out "$work/render" >/dev/null
compared=0
for pair in prometheus.yml:prometheus.yml alertmanager.yml:alertmanager.yml datasources.yml:grafana-datasources.yml; do
  a=${pair%%:*} b=${pair##*:}
  diff <(tail -n +2 "$work/ansible/$a") <(tail -n +2 "$work/render/$b") \
    || die "$a: Ansible's template module and render.py disagree (diff above)"
  compared=$((compared + 1))
done
for rules in "$work"/render/rules/*.yml; do
  diff "$work/ansible/rules-${rules##*/}" "$rules" || die "rules/${rules##*/}: Ansible and render.py disagree"
  compared=$((compared + 1))
done
ok "Ansible's template module and render.py agree on $compared files (${inventory##*/})"
