# shellcheck shell=bash
# Helpers shared by the operator scripts (deploy.sh, rollback.sh, backup.sh, restore.sh): numbered
# steps with their durations, a timestamped log file under logs/, the environment's inventory,
# ports from ansible/group_vars/all/ports.yml, and Ansible invocations with the repository's config.
# Source it after scripts/lib/common.sh.

OPS_DIR="$REPO_ROOT/scripts/ops"
OPS_ENVIRONMENTS=(lab staging production)
OPS_STEP=0 OPS_STEPS=0 OPS_STEP_NAME="" OPS_STEP_T0=$SECONDS
OPS_LOG=""
declare -a OPS_TIMINGS=()

# ops_log_start NAME ENV: tee everything from here on into logs/NAME-ENV-<UTC stamp>.log.
ops_log_start() {
  mkdir -p "$REPO_ROOT/logs"
  OPS_LOG="$REPO_ROOT/logs/$1-$2-$(date -u +%Y%m%dT%H%M%SZ).log"
  exec > >(tee -a "$OPS_LOG") 2> >(tee -a "$OPS_LOG" >&2)
  log "log: ${OPS_LOG#"$REPO_ROOT"/}"
}

# ops_steps N: how many steps this run announces (for "[3/6]").
ops_steps() { OPS_STEPS=$1; }

_ops_step_end() {
  [[ -n "$OPS_STEP_NAME" ]] || return 0
  local secs=$((SECONDS - OPS_STEP_T0))
  OPS_TIMINGS+=("$(printf '%-44s %5ds' "$OPS_STEP_NAME" "$secs")")
  ok "step $OPS_STEP/$OPS_STEPS done in ${secs}s: $OPS_STEP_NAME"
  OPS_STEP_NAME=""
}

# step TITLE: close the previous step (with its duration) and announce the next one.
step() {
  _ops_step_end
  OPS_STEP=$((OPS_STEP + 1)) OPS_STEP_NAME="$1" OPS_STEP_T0=$SECONDS
  banner "[$OPS_STEP/$OPS_STEPS] $1"
}
steps_done() { _ops_step_end; }

# ops_timings: the table of step durations.
ops_timings() { printf '  %s\n' "${OPS_TIMINGS[@]}"; }

# ops_check_env ENV: one of lab, staging, production.
ops_check_env() {
  [[ " ${OPS_ENVIRONMENTS[*]} " == *" $1 "* ]] || die "unknown environment '$1' (one of: ${OPS_ENVIRONMENTS[*]})"
}

# The lab: "lab" (inventory ansible/inventories/lab/hosts.yml) unless NGD_LAB names another one, as
# scripts/lab.sh does (CI uses its own lab so it never disturbs the one people work in).
OPS_LAB="${NGD_LAB:-lab}"
# lab.sh gives every lab but "lab" one shared default subnet: a lab made with --subnet must be
# called with it again, or lab.sh up would move (recreate) it. Take it from its inventory.
if [[ "$OPS_LAB" != lab && -z "${NGD_LAB_SUBNET:-}" && -f "$REPO_ROOT/.lab/$OPS_LAB/hosts.yml" ]]; then
  NGD_LAB_SUBNET=$(sed -nE 's/^ +ngd_lab_subnet: *([0-9./]+).*/\1/p' "$REPO_ROOT/.lab/$OPS_LAB/hosts.yml" | head -1)
  export NGD_LAB_SUBNET
fi

ops_inventory() {
  if [[ "$1" == lab && "$OPS_LAB" != lab ]]; then
    printf '%s/.lab/%s/inventory/hosts.yml\n' "$REPO_ROOT" "$OPS_LAB"
  else
    printf '%s/ansible/inventories/%s/hosts.yml\n' "$REPO_ROOT" "$1"
  fi
}

# ops_lab_inventory: for a lab other than "lab", an inventory directory beside lab.sh's inventory
# that carries the lab environment's group vars (ansible/inventories/lab/group_vars, linked) and
# the network this lab was given (device and admin networks).
ops_lab_inventory() {
  [[ "$OPS_LAB" != lab ]] || return 0
  local dir="$REPO_ROOT/.lab/$OPS_LAB/inventory" subnet f
  [[ -f "$REPO_ROOT/.lab/$OPS_LAB/hosts.yml" ]] || die "lab '$OPS_LAB' has no inventory: scripts/lab.sh up --lab $OPS_LAB"
  subnet=$(sed -nE 's/^ +ngd_lab_subnet: *([0-9./]+).*/\1/p' "$REPO_ROOT/.lab/$OPS_LAB/hosts.yml" | head -1)
  [[ -n "$subnet" ]] || die "no ngd_lab_subnet in .lab/$OPS_LAB/hosts.yml"
  mkdir -p "$dir/group_vars/all"
  cp "$REPO_ROOT/.lab/$OPS_LAB/hosts.yml" "$dir/hosts.yml"
  for f in "$REPO_ROOT"/ansible/inventories/lab/group_vars/all/*.yml; do
    ln -sfn "$f" "$dir/group_vars/all/$(basename "$f")"
  done
  # Loaded after the linked files (alphabetical order): this lab's own network.
  printf -- '---\n# Written by scripts/ops/lib.sh for the lab "%s".\nngd_device_cidrs: [%s]\nngd_admin_cidrs: [%s.1/32]\n' \
    "$OPS_LAB" "$subnet" "${subnet%.*}" >"$dir/group_vars/all/zz-lab-network.yml"
}

# ops_vault_file ENV: the vault password file: $NGD_VAULT_PASSWORD_FILE, else the lab's throw-away
# one (.lab/<lab>/vault-password), else ~/.config/nanogridata/vault-password-ENV. Empty if none.
ops_vault_file() {
  local f
  for f in "${NGD_VAULT_PASSWORD_FILE:-}" \
    "$([[ $1 == lab ]] && echo "$REPO_ROOT/.lab/$OPS_LAB/vault-password")" \
    "${XDG_CONFIG_HOME:-$HOME/.config}/nanogridata/vault-password-$1"; do
    [[ -n "$f" && -s "$f" ]] && { printf '%s\n' "$f"; return 0; }
  done
  return 0
}

# ops_port NAME: a port from ansible/group_vars/all/ports.yml (the only place ports are defined).
ops_port() {
  python3 - "$REPO_ROOT/ansible/group_vars/all/ports.yml" "$1" <<'PY'
import sys
import yaml
ports = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
key = sys.argv[2]
if key not in ports:
    sys.exit(f"{key} is not defined in ansible/group_vars/all/ports.yml")
print(ports[key])
PY
}

# _ops_inventory_cmd ENV ARGS...: ansible-inventory of ENV. With the vault password: an
# environment's group vars include its encrypted vault.yml, and without the password
# ansible-inventory fails as a whole (every variable read empty).
_ops_inventory_cmd() {
  local env="$1" vf
  shift
  vf=$(ops_vault_file "$env")
  ansible-inventory -i "$(ops_inventory "$env")" ${vf:+--vault-password-file "$vf"} "$@"
}

# ops_inventory_var ENV HOST VAR: a variable of HOST as the inventory resolves it.
ops_inventory_var() {
  _ops_inventory_cmd "$1" --host "$2" 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$3"
}

# ops_group_hosts ENV GROUP: the hosts of GROUP, one per line.
ops_group_hosts() {
  _ops_inventory_cmd "$1" --list 2>/dev/null \
    | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin).get(sys.argv[1], {}).get("hosts", [])))' "$2"
}

# ops_ansible_args ENV: the common arguments (inventory, vault password file).
_ops_ansible_common() {
  OPS_ANSIBLE_ARGS=(-i "$(ops_inventory "$1")")
  local vf
  vf=$(ops_vault_file "$1")
  [[ -n "$vf" ]] && OPS_ANSIBLE_ARGS+=(--vault-password-file "$vf")
  return 0
}

# ops_playbook ENV PLAYBOOK [ARGS...]: ansible-playbook with the repository's ansible.cfg.
# Playbooks outside ansible/ (scripts/ops/*.yml) get the shared group vars (ports) as extra vars.
ops_playbook() {
  local env="$1" playbook="$2"
  shift 2
  _ops_ansible_common "$env"
  local extra=()
  [[ "$playbook" == "$OPS_DIR"/* ]] && extra=(-e "@$REPO_ROOT/ansible/group_vars/all/ports.yml")
  ANSIBLE_CONFIG="$REPO_ROOT/ansible/ansible.cfg" ANSIBLE_ROLES_PATH="$REPO_ROOT/ansible/roles" \
    ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}" \
    ansible-playbook "${OPS_ANSIBLE_ARGS[@]}" "${extra[@]}" "$playbook" "$@"
}

# ops_ansible ENV PATTERN [ARGS...]: an ad-hoc ansible command against the environment.
ops_ansible() {
  local env="$1"
  shift
  _ops_ansible_common "$env"
  ANSIBLE_CONFIG="$REPO_ROOT/ansible/ansible.cfg" ansible "${OPS_ANSIBLE_ARGS[@]}" "$@"
}

# ops_status ENV OUT_JSON: per gateway: current release, installed releases (with install time),
# previous release, VIP held, /ready. Written by scripts/ops/status.yml.
ops_status() {
  ops_playbook "$1" "$OPS_DIR/status.yml" -e "ngd_status_out=$2" >"$2.log" 2>&1 \
    || { cat "$2.log" >&2; return 1; }
}

# ops_status_field JSON EXPR: evaluate a Python expression over the status dict "s".
ops_status_field() {
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); r=eval(sys.argv[2]); print(r if not isinstance(r,(list,dict)) else json.dumps(r))' "$1" "$2"
}

# ops_git_version: the gateway version from git, as a PEP 440 version.
#   tag v1.2.0 exactly          -> 1.2.0
#   3 commits after v1.2.0      -> 1.2.0+3.gabc1234
#   no tag                      -> <pyproject version>+gabc1234
#   uncommitted changes         -> ...dirty.<hash of the gateway sources> (a new build per change)
ops_git_version() {
  local desc base local_parts=() pyver
  desc=$(git -C "$REPO_ROOT" describe --tags --always --dirty --match 'v[0-9]*' 2>/dev/null) \
    || die "git describe failed: is $REPO_ROOT a git checkout with at least one commit?"
  pyver=$(sed -nE 's/^version *= *"([^"]+)".*/\1/p' "$REPO_ROOT/gateway/pyproject.toml" | head -1)
  local dirty=0
  [[ "$desc" == *-dirty ]] && { dirty=1; desc=${desc%-dirty}; }
  if [[ "$desc" =~ ^v([0-9][0-9A-Za-z.]*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
    base=${BASH_REMATCH[1]}; local_parts+=("${BASH_REMATCH[2]}" "g${BASH_REMATCH[3]}")
  elif [[ "$desc" =~ ^v([0-9][0-9A-Za-z.]*)$ ]]; then
    base=${BASH_REMATCH[1]}
  else
    base=$pyver; local_parts+=("g$desc")
  fi
  if ((dirty)); then
    local_parts+=(dirty "$(ops_source_hash)")
  fi
  local IFS=.
  if ((${#local_parts[@]})); then printf '%s+%s\n' "$base" "${local_parts[*]}"; else printf '%s\n' "$base"; fi
}

# ops_source_hash: 8 hex digits over the gateway's packaged sources (what goes into the wheel).
ops_source_hash() {
  (cd "$REPO_ROOT/gateway" && find pyproject.toml README.md src -type f ! -name '*.pyc' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-8)
}

# ops_check_version V: a PEP 440 version in canonical form (it names the wheel, the release
# directory and the rollback target): 1.2.0, 1.2.0rc1, 1.2.0.post1, 1.2.0+hotfix.1.
ops_check_version() {
  [[ "$1" =~ ^[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?(\+[a-z0-9]+(\.[a-z0-9]+)*)?$ ]] \
    || die "--version '$1' is not a PEP 440 version (e.g. 1.2.0 or 1.2.0+hotfix.1; lowercase local part)"
}

# ops_host_target ENV: "ARCH PYTHON GLIBC" shared by the hosts that install from the wheelhouse
# (gateways, and the devices group's probe host), as they report it themselves.
ops_host_target() {
  local out
  out=$(ops_ansible "$1" 'gateways:devices' -o -m ansible.builtin.command \
    -a "python3 -c \"import platform, sys; print(platform.machine(), '%d.%d' % sys.version_info[:2], platform.libc_ver()[1])\"" 2>&1) \
    || { printf '%s\n' "$out" >&2; die "could not ask the hosts for their platform (above)"; }
  printf '%s\n' "$out" | python3 "$OPS_DIR/wheelhouse.py" target || exit 2
}

# ops_build_wheelhouse VERSION ARCH PYTHON GLIBC: the gateway wheel (pure Python, stamped VERSION,
# built once) and its dependencies as binary wheels for the hosts' platform (scripts/ops/wheelhouse.py:
# pip download for ARCH / CPython PYTHON / glibc GLIBC, whatever this machine runs) in
# $NGD_CACHE/wheelhouse/VERSION, the directory the gateway role copies to the hosts
# (gateway_wheelhouse_root/gateway_release). Reused when it was built from the same sources
# (ops_source_hash, recorded in SOURCE), with the dependencies of another platform added if this
# one is new; refused when it was built from other sources: a release name must name one content,
# and a host that has VERSION installed keeps it.
ops_build_wheelhouse() {
  local version="$1" dest="$NGD_CACHE/wheelhouse/$1" tmp source built
  local arch="${2:?ops_build_wheelhouse needs ARCH}" py="${3:-3.11}" glibc="${4:-2.36}"
  local target=(--arch "$arch" --python "$py" --glibc "$glibc")
  source=$(ops_source_hash)
  if [[ -f "$dest/.complete" ]]; then
    built=$(cat "$dest/SOURCE" 2>/dev/null || echo "not recorded")
    if [[ "$built" != "$source" ]]; then
      die "release $version was built from other gateway sources (source hash $built, this checkout $source): name this build with another --version (hosts that have $version installed would keep the old one); only if $version was never deployed anywhere, rm -r ${dest/#"$HOME"/\~} and re-run"
    fi
    # The marker scripts/ops/wheelhouse.py writes (Target.key()).
    if [[ -f "$dest/.target-$arch-cp${py//./}-glibc$glibc" ]]; then
      log "wheelhouse $version already built from these sources ($source) for $arch CPython $py: ${dest/#"$HOME"/\~}"
      return 0
    fi
    log "wheelhouse $version: adding the dependencies for $arch CPython $py (glibc $glibc)"
    python3 "$OPS_DIR/wheelhouse.py" deps --dest "$dest" "${target[@]}" || exit 2
    return 0
  fi
  tmp=$(mktemp -d)
  # A copy of the sources with the version stamped in: the checkout itself is never modified.
  tar -C "$REPO_ROOT/gateway" --exclude=build --exclude='*.egg-info' --exclude=__pycache__ \
    --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.pytest_cache -cf - pyproject.toml README.md src \
    | tar -C "$tmp" -xf -
  python3 - "$tmp" "$version" <<'PY' || { rm -rf "$tmp"; die "could not stamp version $version into the sources"; }
import re, sys
from pathlib import Path
root, version = Path(sys.argv[1]), sys.argv[2]
for path, pattern, repl in (
    (root / "pyproject.toml", r'(?m)^version\s*=\s*"[^"]+"', f'version = "{version}"'),
    (root / "src/nanogridata_gateway/__init__.py", r'(?m)^__version__\s*=\s*"[^"]+"', f'__version__ = "{version}"'),
):
    text, n = re.subn(pattern, repl, path.read_text(encoding="utf-8"), count=1)
    if n != 1:
        sys.exit(f"no version line in {path}")
    path.write_text(text, encoding="utf-8")
PY
  rm -rf "$dest"
  mkdir -p "$dest"
  # The gateway alone (pure Python: one wheel for every platform); its dependencies come as
  # binary wheels for the hosts, never built here.
  python3 -m pip wheel --quiet --no-deps --wheel-dir "$dest" "$tmp" || { rm -rf "$tmp" "$dest"; die "pip wheel of the gateway failed"; }
  rm -rf "$tmp"
  python3 "$OPS_DIR/wheelhouse.py" deps --dest "$dest" "${target[@]}" || { rm -rf "$dest"; exit 2; }
  printf '%s\n' "$version" >"$dest/VERSION"
  printf '%s\n' "$source" >"$dest/SOURCE"
  touch "$dest/.complete"
  log "wheelhouse $version: $(find "$dest" -name '*.whl' | wc -l) wheels for $arch CPython $py in ${dest/#"$HOME"/\~}"
}
