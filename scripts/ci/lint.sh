#!/usr/bin/env bash
# Lint hook of the scripts component, repository-wide for shell and YAML:
#   ShellCheck on every *.sh of the repository (and extension-less bash entry points),
#   --help on every entry point, no reference to files outside the repository,
#   yamllint over every YAML file (root .yamllint), ruff + mypy over the scripts' Python,
#   ansible-lint over the shared molecule playbooks.
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
help_from_header "$@"
cd "$REPO_ROOT"

ensure_apt shellcheck

# Everything in the tree but VCS, caches, generated lab files and vendored dependencies.
prune=(-path ./.git -o -path ./.lab -o -name node_modules -o -name .terraform -o -name .venv
  -o -name build -o -name '.*_cache')
mapfile -t shell_files < <(
  { find . \( "${prune[@]}" \) -prune -o -type f -name '*.sh' -print
    # Executables without an extension that are bash scripts (.ci/run, ...).
    find . \( "${prune[@]}" \) -prune -o -type f -perm -u+x ! -name '*.*' -print \
      | while read -r f; do head -c 64 "$f" | grep -qE '^#!.*\b(ba)?sh\b' && echo "$f"; done
  } | sort -u)
((${#shell_files[@]})) || die "no shell scripts found: wrong directory?"
log "shellcheck: ${#shell_files[@]} files"
shellcheck -x -P SCRIPTDIR "${shell_files[@]}" || die "shellcheck found problems (above)"

# --help on every entry point (a file with a shebang; sourced libraries have none), answered
# without REPO_ROOT and without doing anything. Checked in the source first, so a script that
# would ignore --help and run for real (a deploy) is never started here. Exempt: .ci/run (calls
# the test command and nothing else) and the image recipe's setup-rootfs.sh (an edit rebuilds it).
log "--help: every entry point answers it"
for f in "${shell_files[@]}"; do
  head -c 2 "$f" | grep -q '^#!' || continue
  case "$f" in ./.ci/run | ./scripts/lab/image/setup-rootfs.sh) continue ;; esac
  grep -q -e '--help' -e 'help_from_header' "$f" \
    || die "$f has no --help: add 'help_from_header \"\$@\"' after sourcing scripts/lib/common.sh"
  env -u REPO_ROOT timeout 20 "$(head -1 "$f" | grep -q bash && echo bash || echo sh)" "$f" --help \
    </dev/null >/dev/null 2>&1 || die "$f --help failed (run it to see why)"
done

# The repository stands alone: what a user clones must not point at files only its authors have.
log "no file refers to a path outside the repository"
# The pattern is spelled in pieces so that this file does not match it itself.
outside_notes='lab''-notes'
if git grep -n -I -E "$outside_notes" -- .; then
  die "the files above refer to notes outside the repository: state the fact itself instead"
fi

log "yamllint: every YAML file (config .yamllint)"
yamllint -f parsable . >"${TMPDIR:-/tmp}/ngd-yamllint.$$" || {
  grep -v '\[warning\]' "${TMPDIR:-/tmp}/ngd-yamllint.$$" >&2; rm -f "${TMPDIR:-/tmp}/ngd-yamllint.$$"
  die "yamllint found errors (above)"
}
warnings=$(grep -c '\[warning\]' "${TMPDIR:-/tmp}/ngd-yamllint.$$" || true)
rm -f "${TMPDIR:-/tmp}/ngd-yamllint.$$"
((warnings == 0)) || log "yamllint: $warnings warnings (long lines; not fatal)"

python_files=(scripts/lab/*.py scripts/tests/*.py molecule/smoke/tests/*.py)
log "ruff + mypy: ${python_files[*]}"
# settings: the root ruff.toml
ruff check --quiet "${python_files[@]}" || die "ruff check found problems (above)"
ruff format --check --quiet "${python_files[@]}" || die "ruff format: run 'ruff format ${python_files[*]}'"
mypy --strict --python-version 3.11 --no-error-summary --ignore-missing-imports \
  --cache-dir "$NGD_CACHE/mypy-scripts" "${python_files[@]}" || die "mypy found problems (above)"
log "ansible-lint: molecule/shared and molecule/smoke playbooks"
ansible-lint -q molecule/shared/create.yml molecule/shared/destroy.yml molecule/smoke/converge.yml \
  || die "ansible-lint found problems in molecule/shared or molecule/smoke (above)"
ok "scripts lint passed: shellcheck, yamllint, ruff, mypy, ansible-lint"
