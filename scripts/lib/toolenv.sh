# shellcheck shell=bash
# The project's tool environment: one Python venv holding ansible, molecule, linters, the gateway
# package and every component's CI requirements (<component>/requirements-ci.txt).
# The venv lives in the cache, keyed by a hash of those files, so a fresh clone reuses it.
#   source scripts/lib/common.sh; source scripts/lib/toolenv.sh; toolenv_activate

# toolenv_reqs: the requirement files of the venv, into the array TOOLENV_REQS.
toolenv_reqs() {
  TOOLENV_REQS=()
  local f
  for f in "$REPO_ROOT"/scripts/requirements.txt "$REPO_ROOT"/*/requirements-ci.txt; do
    [[ -f "$f" ]] && TOOLENV_REQS+=("$f")
  done
  return 0
}

# toolenv_key: the 12 hex digits naming the venv ($NGD_CACHE/venv-KEY) of these requirements.
toolenv_key() {
  toolenv_reqs
  (cat "${TOOLENV_REQS[@]}" "$REPO_ROOT/gateway/pyproject.toml" 2>/dev/null; python3 --version) \
    | sha256sum | cut -c1-12
}

toolenv_activate() {
  local reqs=() f key
  toolenv_reqs
  reqs=("${TOOLENV_REQS[@]}")
  key=$(toolenv_key)
  local venv="$NGD_CACHE/venv-$key"
  # Hooks and engineers may build the same venv at once: one builder, the others wait for it.
  exec {_ngd_venv_lock}>"$venv.lock"
  flock -w 1800 "$_ngd_venv_lock" || die "timed out waiting for another build of $venv"
  if [[ ! -f "$venv/.complete" ]]; then
    log "creating tool venv $venv (first run on this machine or requirements changed)"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed"
    "$venv/bin/pip" install -q --upgrade pip wheel >/dev/null || die "pip upgrade failed"
    local args=()
    for f in "${reqs[@]}"; do args+=(-r "$f"); done
    if [[ -f "$REPO_ROOT/gateway/pyproject.toml" ]]; then args+=("$REPO_ROOT/gateway[dev]"); fi
    # pip's build warnings are noise on success; on failure show the end of the log.
    if ! "$venv/bin/pip" install -q "${args[@]}" >"$venv.pip.log" 2>&1; then
      tail -n 40 "$venv.pip.log" >&2
      die "pip install into the tool venv failed (log: $venv.pip.log)"
    fi
    touch "$venv/.complete"
  fi
  # The gateway is installed editable from *this* checkout every time (cheap, and a fresh clone
  # must test its own sources, not the ones the venv was first built from).
  if [[ -f "$REPO_ROOT/gateway/pyproject.toml" ]]; then
    "$venv/bin/pip" install -q --no-deps -e "$REPO_ROOT/gateway" >"$venv.pip-gateway.log" 2>&1 \
      || { tail -n 40 "$venv.pip-gateway.log" >&2; die "pip install -e gateway failed (log: $venv.pip-gateway.log)"; }
  fi
  exec {_ngd_venv_lock}>&-
  # .complete's mtime is the venv's last use: venvs of older requirements unused for 3 days go.
  touch "$venv/.complete"
  local old
  for old in "$NGD_CACHE"/venv-*/.complete; do
    [[ "$old" == "$venv/.complete" || ! -f "$old" ]] && continue
    if [[ -n "$(find "$old" -mtime +3 2>/dev/null)" ]]; then
      old=${old%/.complete}
      log "removing tool venv unused for 3 days: $old"
      rm -rf "$old" "$old".lock "$old".pip*.log
    fi
  done
  # shellcheck disable=SC1091
  source "$venv/bin/activate"
  export NGD_VENV="$venv"
  # The editable install points at whichever checkout ran last; another checkout's run (a second
  # worktree, a fresh clone) may re-point it at any moment. This checkout's sources come first.
  if [[ -d "$REPO_ROOT/gateway/src" ]]; then
    export PYTHONPATH="$REPO_ROOT/gateway/src${PYTHONPATH:+:$PYTHONPATH}"
  fi
}
