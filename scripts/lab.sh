#!/usr/bin/env bash
# The lab: real Debian 12 hosts (systemd as PID 1) as containers on one machine.
# The ONLY code that knows how to create a host container: the lab and every molecule scenario
# (molecule/shared/create.yml) come through here, so they share the image and the settings.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$REPO_ROOT/scripts/lab/image.sh"

LAB_LABEL=io.nanogridata.lab          # value: the lab's name; marks every container and network
LAB_HOSTS_FILE="$REPO_ROOT/scripts/lab/hosts.tsv"
LAB_DEFAULT_SUBNET=172.30.53.0/24     # the lab "lab" (inventory contract)
LAB_OTHER_SUBNET=172.30.54.0/24       # any other lab name (molecule scenarios, one at a time)
LAB_VIP_OCTET=100
LAB_BOOT_TIMEOUT=90

# --privileged fails in unprivileged sandboxes ("unable to apply caps": no CAP_SYS_RESOURCE); this
# is the smallest set with which systemd reaches `running` in a container.
LAB_RUN_ARGS=(
  --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add NET_RAW --cap-add SYS_PTRACE
  --security-opt seccomp=unconfined --cgroupns=host
  -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock
  --stop-signal SIGRTMIN+3 --restart no
)

usage() {
  cat <<USAGE
Usage: ${0##*/} COMMAND [options]

Commands:
  up [--hosts a,b] [--fresh]   create (or keep) the lab's hosts and write its inventory
  down [--all]                 remove the lab's containers and network (--all: every lab of ours)
  status                       hosts, state, address, systemd state
  shell HOST [CMD...]          a shell (or CMD) on HOST
  ip HOST                      HOST's address on the lab network
  image                        build the host image if needed and print its name
  run-args                     print the docker run arguments every host container gets, one a line
  secret NAME                  a throw-away random secret of this lab (stable until 'down')
  inventory                    print the inventory of the hosts (--hosts; default all) as 'up'
                               writes it, without creating anything (render tests use it)

Options:
  --lab NAME       lab name (default: lab; env NGD_LAB). Containers are ngd-NAME-HOST on the
                   network ngd-NAME, labelled $LAB_LABEL=NAME.
  --subnet CIDR    a /24 for the lab network (env NGD_LAB_SUBNET; default: the subnet an
                   existing lab already has, else $LAB_DEFAULT_SUBNET for the lab "lab" and
                   $LAB_OTHER_SUBNET for any other lab)
  --hosts a,b      only these hosts of scripts/lab/hosts.tsv (default: all)
  --fresh          recreate hosts even when they are up to date
  -h, --help       this help

Env NGD_LAB_CPU_SHARES=N gives the hosts it creates a CPU weight (docker --cpu-shares; default
1024), and \`run-args\` prints it for other creators of lab hosts (the Hetzner twin's servers):
scripts/test.sh lowers it for the molecule scenarios' and the rehearsal's hosts so that they yield
the CPU to the lab the failover drills run in.

The lab "lab" writes ansible/inventories/lab/hosts.yml; every lab keeps its throw-away
inventory copy, vault password and secrets under .lab/NAME/ (git-ignored).
USAGE
}

# --- host definition --------------------------------------------------------------------------
declare -A HOST_OCTET=() HOST_GROUP=() HOST_EXTRA=()
ALL_HOSTS=()
load_hosts() {
  local name octet group extra
  while read -r name octet group extra; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    HOST_OCTET[$name]=$octet HOST_GROUP[$name]=$group HOST_EXTRA[$name]=${extra:--}
    ALL_HOSTS+=("$name")
  done <"$LAB_HOSTS_FILE"
}

lab_prefix() { local s="${SUBNET%/*}"; printf '%s\n' "${s%.*}"; }
host_ip() { printf '%s.%s\n' "$(lab_prefix)" "${HOST_OCTET[$1]}"; }
container_of() { printf 'ngd-%s-%s\n' "$LAB" "$1"; }
network_name() { printf 'ngd-%s\n' "$LAB"; }

# --- docker helpers ---------------------------------------------------------------------------
our_containers() { "$DOCKER" ps -aq --filter "label=$LAB_LABEL=$LAB"; }
our_networks() { "$DOCKER" network ls -q --filter "label=$LAB_LABEL=$LAB"; }
container_label() {
  "$DOCKER" inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}
container_state() {
  local state
  state=$("$DOCKER" inspect -f '{{.State.Status}}' "$1" 2>/dev/null || true)
  printf '%s\n' "${state:-absent}"
}
container_ip() {
  "$DOCKER" inspect -f "{{ with index .NetworkSettings.Networks \"$(network_name)\" }}{{ .IPAddress }}{{ end }}" \
    "$1" 2>/dev/null || true
}
systemd_state() {
  "$DOCKER" exec "$1" systemctl is-system-running 2>/dev/null || true
}

remove_containers() {
  local ids
  ids=$(printf '%s\n' "$@" | grep -v '^$' || true)
  [[ -n "$ids" ]] || return 0
  # shellcheck disable=SC2086 # word splitting of container ids is intended
  "$DOCKER" rm -f $ids >/dev/null
}

# --- network ----------------------------------------------------------------------------------
ensure_network() {
  local net current
  net=$(network_name)
  if "$DOCKER" network inspect "$net" >/dev/null 2>&1; then
    [[ "$("$DOCKER" network inspect -f "{{ index .Labels \"$LAB_LABEL\" }}" "$net")" == "$LAB" ]] \
      || die "network $net exists but is not ours (no label $LAB_LABEL=$LAB): remove it or pick another --lab"
    current=$("$DOCKER" network inspect -f '{{ range .IPAM.Config }}{{ .Subnet }}{{ end }}' "$net")
    if [[ "$current" == "$SUBNET" ]]; then return 0; fi
    log "network $net has subnet $current, want $SUBNET: recreating it"
    remove_containers "$(our_containers)"
    "$DOCKER" network rm "$net" >/dev/null
  fi
  # Another lab of ours on this subnet with nothing running is a killed run's (say a molecule
  # scenario's): remove it. Anything else holding the subnet gets a clear message, not Docker's
  # "Pool overlaps".
  local other other_lab
  for other in $("$DOCKER" network ls -q); do
    if [[ "$("$DOCKER" network inspect -f '{{ range .IPAM.Config }}{{ .Subnet }} {{ end }}' "$other")" == *"$SUBNET "* ]]; then
      other_lab=$("$DOCKER" network inspect -f "{{ index .Labels \"$LAB_LABEL\" }}" "$other")
      if [[ -n "$other_lab" && -z "$("$DOCKER" ps -q --filter "label=$LAB_LABEL=$other_lab")" ]]; then
        log "removing the stale lab '$other_lab' (nothing running) that holds $SUBNET"
        remove_containers "$("$DOCKER" ps -aq --filter "label=$LAB_LABEL=$other_lab")"
        "$DOCKER" network rm "$other" >/dev/null
        rm -rf "$REPO_ROOT/.lab/$other_lab"
        continue
      fi
      die "subnet $SUBNET is already used by network $("$DOCKER" network inspect -f '{{.Name}} (labels: {{.Labels}})' "$other"). If it is a stale lab of ours: ${0##*/} down --lab NAME; otherwise pass --subnet (or NGD_LAB_SUBNET)"
    fi
  done
  "$DOCKER" network create --driver bridge --subnet "$SUBNET" \
    --gateway "$(lab_prefix).1" --label "$LAB_LABEL=$LAB" "$net" >/dev/null
  log "network $net $SUBNET created"
}

# --- hosts ------------------------------------------------------------------------------------
# A host is kept when it runs the current image at its address with a booted systemd (what was
# deployed on it survives); anything else (a killed run's leftovers, an older recipe) is replaced.
host_is_current() {
  local c="$1" host="$2" image="$3" sd
  [[ "$(container_state "$c")" == running ]] || return 1
  [[ "$(container_label "$c" "$LAB_LABEL")" == "$LAB" ]] || return 1
  [[ "$("$DOCKER" inspect -f '{{.Config.Image}}' "$c")" == "$image" ]] || return 1
  [[ "$(container_ip "$c")" == "$(host_ip "$host")" ]] || return 1
  sd=$(systemd_state "$c")
  # 'degraded' after boot means a deployed service failed: keep the host, say so.
  [[ "$sd" == degraded ]] && warn "$c: systemd is degraded (${0##*/} shell --lab $LAB $host systemctl --failed)"
  [[ "$sd" == running || "$sd" == degraded ]]
}

start_host() {
  local host="$1" image="$2" c
  c=$(container_of "$host")
  "$DOCKER" run -d --name "$c" --hostname "$host" \
    --network "$(network_name)" --ip "$(host_ip "$host")" --network-alias "$host" \
    --label "$LAB_LABEL=$LAB" --label "io.nanogridata.host=$host" \
    ${NGD_LAB_CPU_SHARES:+--cpu-shares "$NGD_LAB_CPU_SHARES"} "${LAB_RUN_ARGS[@]}" "$image" >/dev/null
}

# reboot_host CONTAINER: start a stopped host; true once its systemd is up (running or degraded).
reboot_host() {
  local c="$1" state="" deadline=$((SECONDS + LAB_BOOT_TIMEOUT))
  "$DOCKER" start "$c" >/dev/null 2>&1 || return 1
  while ((SECONDS < deadline)); do
    state=$(systemd_state "$c")
    case "$state" in
      running|degraded) return 0 ;;
      maintenance|stopping|offline) return 1 ;;
    esac
    sleep 0.5
  done
  return 1
}

wait_for_systemd() {
  local c="$1" state="" deadline=$((SECONDS + LAB_BOOT_TIMEOUT))
  # Poll: right after 'docker run' systemd's bus may not exist yet (empty answer).
  while ((SECONDS < deadline)); do
    state=$(systemd_state "$c")
    case "$state" in
      running) return 0 ;;
      degraded|maintenance|stopping|offline) break ;;
    esac
    sleep 0.5
  done
  "$DOCKER" exec "$c" systemctl --failed --no-pager >&2 || true
  die "$c: systemd is '${state:-not answering}' after boot, want 'running' (failed units above; logs: ${0##*/} shell --lab $LAB ${c#ngd-"$LAB"-} journalctl -b)"
}

cmd_up() {
  local image host c started=()
  ensure_docker
  lab_image_ensure
  image=$(lab_image_ref)
  # Running, current hosts are kept (so 'up' twice is safe and cheap). A stopped host of the
  # current image (the Docker engine or the machine restarted) is booted again, like a rebooted
  # server, so what was deployed on it survives; if it does not boot, it is replaced. Containers
  # of hosts no longer defined, of another image, or everything with --fresh, are removed.
  local id state host name ctr_image
  for id in $(our_containers); do
    read -r state host name ctr_image < <("$DOCKER" inspect -f \
      '{{.State.Status}} {{ or (index .Config.Labels "io.nanogridata.host") "-" }} {{.Name}} {{.Config.Image}}' "$id")
    name=${name#/}
    if [[ -z "${HOST_OCTET[$host]:-}" || $FRESH == 1 ]]; then
      log "removing stale container $name ($state)"
      remove_containers "$id"
    elif [[ "$state" != running ]]; then
      if [[ "$ctr_image" == "$image" ]] && reboot_host "$name"; then
        log "$name was stopped: booted it again"
      else
        log "removing stale container $name ($state)"
        remove_containers "$id"
      fi
    fi
  done
  ensure_network
  for host in "${HOSTS[@]}"; do
    c=$(container_of "$host")
    if host_is_current "$c" "$host" "$image"; then
      log "$c is up to date"
      continue
    fi
    if [[ "$(container_state "$c")" != absent ]]; then
      [[ "$(container_label "$c" "$LAB_LABEL")" == "$LAB" ]] \
        || die "container $c exists but is not ours (no label $LAB_LABEL=$LAB): remove it or pick another --lab"
      remove_containers "$c"
    fi
    start_host "$host" "$image"
    started+=("$c")
  done
  for c in "${started[@]}"; do wait_for_systemd "$c"; done
  ((${#started[@]})) && log "started: ${started[*]}"
  write_lab_files
  ok "lab '$LAB' up: ${HOSTS[*]} on $(network_name) $SUBNET (image $image)"
}

cmd_down() {
  local labs=("$LAB") l
  if ((ALL_LABS)); then
    mapfile -t labs < <({ "$DOCKER" ps -a --format "{{.Label \"$LAB_LABEL\"}}" --filter "label=$LAB_LABEL"
      "$DOCKER" network ls --format "{{.Label \"$LAB_LABEL\"}}" --filter "label=$LAB_LABEL"; } | sort -u | grep -v '^$' || true)
  fi
  for l in "${labs[@]}"; do
    LAB=$l
    remove_containers "$(our_containers)"
    local n
    for n in $(our_networks); do "$DOCKER" network rm "$n" >/dev/null; done
    rm -rf "$REPO_ROOT/.lab/$l"
    [[ "$l" == lab ]] && rm -f "$REPO_ROOT/ansible/inventories/lab/hosts.yml"
    ok "lab '$l' removed"
  done
}

cmd_status() {
  local id name state ip sd ids
  ids=$(our_containers)
  if [[ -z "$ids" ]]; then
    log "lab '$LAB' has no hosts (${0##*/} up --lab $LAB)"
    return 0
  fi
  printf '%-22s %-10s %-15s %s\n' CONTAINER STATE ADDRESS SYSTEMD
  for id in $ids; do
    name=$("$DOCKER" inspect -f '{{.Name}}' "$id" | tr -d /)
    state=$(container_state "$id")
    ip=$(container_ip "$id")
    sd=-
    [[ "$state" == running ]] && sd=$(systemd_state "$id")
    printf '%-22s %-10s %-15s %s\n' "$name" "$state" "${ip:--}" "${sd:-unknown}"
  done | sort
  local net
  net=$(network_name)
  if "$DOCKER" network inspect "$net" >/dev/null 2>&1; then
    SUBNET=$("$DOCKER" network inspect -f '{{ range .IPAM.Config }}{{ .Subnet }}{{ end }}' "$net")
    log "network $net $SUBNET, VIP $(lab_prefix).$LAB_VIP_OCTET"
  fi
}

need_host_arg() {
  [[ -n "${ARGS[0]:-}" ]] || die "$COMMAND needs a HOST (one of: ${ALL_HOSTS[*]})"
  [[ -n "${HOST_OCTET[${ARGS[0]}]:-}" ]] || die "unknown host '${ARGS[0]}' (one of: ${ALL_HOSTS[*]})"
  TARGET=$(container_of "${ARGS[0]}")
  [[ "$(container_state "$TARGET")" == running ]] || die "$TARGET is not running (${0##*/} up --lab $LAB)"
}

cmd_shell() {
  need_host_arg
  local tty=(-i)
  [[ -t 0 && -t 1 ]] && tty=(-it)
  if ((${#ARGS[@]} > 1)); then
    exec "$DOCKER" exec "${tty[@]}" "$TARGET" "${ARGS[@]:1}"
  fi
  exec "$DOCKER" exec "${tty[@]}" "$TARGET" bash -l
}

cmd_ip() {
  need_host_arg
  local ip
  ip=$(container_ip "$TARGET")
  [[ -n "$ip" ]] || die "$TARGET has no address on $(network_name)"
  printf '%s\n' "$ip"
}

# --- generated files: inventory, throw-away secrets ---------------------------------------------
lab_dir() { printf '%s/.lab/%s\n' "$REPO_ROOT" "$LAB"; }

# secret NAME: a random value generated once per lab (never committed; removed by 'down').
lab_secret() {
  local name="$1" dir
  [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || die "secret name '$name': use letters, digits, _ . -"
  dir="$(lab_dir)/secrets"
  mkdir -p "$dir" && chmod 700 "$dir"
  if [[ ! -s "$dir/$name" ]]; then
    # Atomic: written to a temp file (0600) in the same directory, then renamed into place, so a
    # concurrent reader (two scripts asking at once) or a killed run never sees a partial secret.
    # A racing writer loses without harm: `mv -n` keeps the first secret, and both read it back.
    local tmp
    tmp=$(mktemp "$dir/.$name.XXXXXX")
    chmod 600 "$tmp"
    if ! head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$tmp" || [[ ! -s "$tmp" ]]; then
      rm -f "$tmp"; die "could not write secret $name"
    fi
    # An empty file can only be the leftover of a killed non-atomic write: replace it.
    [[ -e "$dir/$name" && ! -s "$dir/$name" ]] && rm -f "$dir/$name"
    mv -n "$tmp" "$dir/$name"
    rm -f "$tmp"
  fi
  cat "$dir/$name"
}

# print_inventory HOST...: the inventory of these hosts of scripts/lab/hosts.tsv on this lab's subnet.
print_inventory() {
  local group host extra kv
  printf '# Generated by scripts/lab.sh for the lab "%s" (%s): do not edit, do not commit.\n' "$LAB" "$SUBNET"
  printf 'all:\n  vars:\n'
  printf '    ngd_env: lab\n    ngd_vip: %s.%s\n    ngd_vip_prefix: 24\n' "$(lab_prefix)" "$LAB_VIP_OCTET"
  printf '    ngd_vip_provider: none\n    ngd_vip_interface: eth0\n    ngd_floating_ip_id: ""\n'
  printf '    ngd_lab_name: %s\n    ngd_lab_subnet: %s\n' "$LAB" "$SUBNET"
  printf '    ansible_connection: community.docker.docker\n'
  printf '    ansible_python_interpreter: /usr/bin/python3\n'
  printf '  children:\n'
  for group in gateways monitoring collectors devices; do
    printf '    %s:\n      hosts:' "$group"
    local any=0
    for host in "$@"; do
      [[ "${HOST_GROUP[$host]}" == "$group" ]] || continue
      ((any)) || printf '\n'
      any=1
      printf '        %s:\n' "$host"
      printf '          ansible_host: %s\n' "$(container_of "$host")"
      printf '          ngd_private_ip: %s\n          ngd_public_ip: %s\n' "$(host_ip "$host")" "$(host_ip "$host")"
      extra=${HOST_EXTRA[$host]}
      if [[ "$extra" != - ]]; then
        IFS=, read -ra kvs <<<"$extra"
        for kv in "${kvs[@]}"; do printf '          %s: %s\n' "${kv%%=*}" "${kv#*=}"; done
      fi
    done
    ((any)) || printf ' {}\n'
  done
}

write_inventory() {
  local out="$1" host inv_hosts=()
  # Every host of this lab that exists, not just the ones this 'up' asked for.
  for host in "${ALL_HOSTS[@]}"; do
    [[ "$(container_label "$(container_of "$host")" "$LAB_LABEL")" == "$LAB" ]] && inv_hosts+=("$host")
  done
  print_inventory "${inv_hosts[@]}" >"$out.tmp"
  mv "$out.tmp" "$out"
}

write_lab_files() {
  local dir
  dir=$(lab_dir)
  mkdir -p "$dir"
  lab_secret vault-password >/dev/null
  ln -sf secrets/vault-password "$dir/vault-password"
  write_inventory "$dir/hosts.yml"
  if [[ "$LAB" == lab ]]; then
    mkdir -p "$REPO_ROOT/ansible/inventories/lab"
    cp "$dir/hosts.yml" "$REPO_ROOT/ansible/inventories/lab/hosts.yml"
    log "inventory: ansible/inventories/lab/hosts.yml"
  else
    log "inventory: .lab/$LAB/hosts.yml"
  fi
}

# --- main -------------------------------------------------------------------------------------
COMMAND="${1:-}"
[[ -n "$COMMAND" ]] || { usage >&2; exit 2; }
shift
LAB="${NGD_LAB:-lab}" SUBNET="${NGD_LAB_SUBNET:-}" HOSTS_ARG="" FRESH=0 ALL_LABS=0 ARGS=()
[[ -z "${NGD_LAB_CPU_SHARES:-}" || ("$NGD_LAB_CPU_SHARES" =~ ^[0-9]+$ && "$NGD_LAB_CPU_SHARES" -ge 2) ]] \
  || die "NGD_LAB_CPU_SHARES='$NGD_LAB_CPU_SHARES' is not a CPU weight: a number >= 2 (docker --cpu-shares; unset: 1024)"
while (($#)); do
  case "$1" in
    --lab) LAB="${2:?--lab needs a name}"; shift 2 ;;
    --subnet) SUBNET="${2:?--subnet needs a CIDR}"; shift 2 ;;
    --hosts) HOSTS_ARG="${2:?--hosts needs a list}"; shift 2 ;;
    --fresh) FRESH=1; shift ;;
    --all) ALL_LABS=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; ARGS+=("$@"); break ;;
    -*) [[ "$COMMAND" == shell && ${#ARGS[@]} -gt 0 ]] || { usage >&2; die "unknown option: $1"; }
        ARGS+=("$@"); break ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[[ "$COMMAND" == -h || "$COMMAND" == --help ]] && { usage; exit 0; }
[[ "$LAB" =~ ^[a-z0-9][a-z0-9-]{0,19}$ ]] \
  || die "--lab '$LAB': use 1-20 lowercase letters, digits or '-' (it names containers and a network)"
if [[ -z "$SUBNET" ]]; then
  # An existing lab keeps its subnet: re-creating its network would remove its hosts.
  SUBNET=$("${DOCKER:-docker}" network inspect -f '{{ range .IPAM.Config }}{{ .Subnet }}{{ end }}' \
    "$(network_name)" 2>/dev/null || true)
fi
if [[ -z "$SUBNET" ]]; then
  if [[ "$LAB" == lab ]]; then SUBNET=$LAB_DEFAULT_SUBNET; else SUBNET=$LAB_OTHER_SUBNET; fi
fi
[[ "$SUBNET" =~ ^([0-9]{1,3}\.){3}0/24$ ]] || die "--subnet '$SUBNET': give a /24 like 172.30.54.0/24"

load_hosts
HOSTS=("${ALL_HOSTS[@]}")
if [[ -n "$HOSTS_ARG" ]]; then
  IFS=, read -ra HOSTS <<<"$HOSTS_ARG"
  for h in "${HOSTS[@]}"; do
    [[ -n "${HOST_OCTET[$h]:-}" ]] || die "--hosts: unknown host '$h' (defined in scripts/lab/hosts.tsv: ${ALL_HOSTS[*]})"
  done
fi

case "$COMMAND" in
  up) cmd_up ;;
  down) ensure_docker; cmd_down ;;
  status) ensure_docker; cmd_status ;;
  shell) ensure_docker; cmd_shell ;;
  ip) ensure_docker >&2; cmd_ip ;;
  image) ensure_docker >&2; lab_image_ensure >&2; lab_image_ref ;;
  run-args) printf '%s\n' ${NGD_LAB_CPU_SHARES:+--cpu-shares "$NGD_LAB_CPU_SHARES"} "${LAB_RUN_ARGS[@]}" ;;
  inventory) print_inventory "${HOSTS[@]}" ;;
  secret) [[ -n "${ARGS[0]:-}" ]] || die "secret needs a NAME"; lab_secret "${ARGS[0]}" ;;
  *) usage >&2; die "unknown command '$COMMAND'" ;;
esac
