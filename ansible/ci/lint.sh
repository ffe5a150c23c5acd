#!/usr/bin/env bash
# Lint stage of ansible/: yamllint and ansible-lint (production profile) over roles, playbooks,
# group_vars and inventories, plus shellcheck of the role's shell helpers.
#   ./scripts/test.sh --component ansible --stage lint
set -euo pipefail
# shellcheck source=SCRIPTDIR/../../scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

case "${1:-}" in
  -h|--help) sed -n '2,3p' "$0"; exit 0 ;;
esac

ensure_apt shellcheck
require_cmd ansible-lint "the tool venv provides it (scripts/requirements.txt)"
require_cmd yamllint "the tool venv provides it (scripts/requirements.txt)"

cd "$REPO_ROOT/ansible"
log "yamllint ansible/"
yamllint --strict -c .yamllint . || die "yamllint found problems in ansible/ (above)"
log "yamllint molecule/ scenarios of the roles"
yamllint --strict -c .yamllint "$REPO_ROOT"/molecule/{firewall,nginx_stream,keepalived,gateway,monitoring,ha-pair} \
  "$REPO_ROOT"/molecule/inventory \
  || die "yamllint found problems in molecule/ (above)"

log "shellcheck of the roles' and hooks' shell scripts"
shellcheck -x roles/keepalived/files/keepalived-config-test ci/*.sh ci/render/*.sh "$REPO_ROOT"/molecule/ci/*.sh \
  || die "shellcheck found problems (above)"

log "ruff and mypy of the node tests (ansible/tests/infra)"
ruff check --config tests/ruff.toml tests/infra || die "ruff found problems in ansible/tests/infra"
ruff format --check --config tests/ruff.toml tests/infra || die "ansible/tests/infra needs ruff format"
(cd tests/infra && mypy --strict --ignore-missing-imports --python-version 3.11 .) \
  || die "mypy found problems in ansible/tests/infra"

log "every role declares its defaults in meta/argument_specs.yml, and nothing else"
python3 - <<'PY' || die "a role's meta/argument_specs.yml and defaults disagree (above)"
import sys
from pathlib import Path

import yaml

bad = 0
for role in sorted(Path("roles").iterdir()):
    spec = role / "meta" / "argument_specs.yml"
    if not spec.is_file():
        print(f"{role}: no meta/argument_specs.yml: declare the role's inputs there")
        bad += 1
        continue
    declared = set(yaml.safe_load(spec.read_text())["argument_specs"]["main"]["options"])
    defaults = set()
    for path in sorted((role / "defaults").rglob("*.yml")):
        if not path.is_symlink():  # monitoring.yml: prometheus/defaults.yml, shared, not the role's own
            defaults |= set(yaml.safe_load(path.read_text()) or {})
    for name in sorted(defaults - declared):
        print(f"{role}: {name} has a default but no entry in meta/argument_specs.yml")
        bad += 1
    for name in sorted(declared - defaults):
        print(f"{role}: meta/argument_specs.yml declares {name}, which has no default")
        bad += 1
sys.exit(1 if bad else 0)
PY

log "ansible-lint (profile production)"
export ANSIBLE_CONFIG="$REPO_ROOT/ansible/ansible.cfg" ANSIBLE_ROLES_PATH="$REPO_ROOT/ansible/roles"
ansible-lint --profile production --strict --offline -q || die "ansible-lint found problems (above)"
ok "ansible lint clean"
