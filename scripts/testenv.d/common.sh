# shellcheck shell=bash
# Shared helpers for scripts/testenv and its components (scripts/testenv.d/*.sh).
#
# Sourced once by the dispatcher before any component file. Everything a
# component creates lives under $BPM_TESTENV_DIR:
#   cache/<name>-<version>/   built tools, kept across `down` (keyed by version)
#   run/<component>/          runtime state, removed by `down`
#   run/pids/<name>.pid       one file per process we started (stop by PID only)
# Component files prefix their globals with their own name (DOCKER_*, SSH_*)
# because they all share this one shell.

: "${BPM_TESTENV_DIR:=${XDG_CACHE_HOME:-$HOME/.cache}/bpm-testenv}"
export BPM_TESTENV_DIR
# shellcheck disable=SC2034 # used by the component files
BPMTE_RUN=$BPM_TESTENV_DIR/run
# shellcheck disable=SC2034
BPMTE_CACHE=$BPM_TESTENV_DIR/cache
BPMTE_PIDS=$BPMTE_RUN/pids
# Prefix of every kernel object we create (netns, links, iptables chains), so
# `verify-clean` can find leftovers by name. Link names are limited to 15 bytes.
# shellcheck disable=SC2034
BPMTE_PREFIX=bpmte
# Address plan (all inside 10.213.0.0/16, so components never overlap):
#   10.213.0.0/24    kubernetes (node bridge bpmte-k8s0)
#   10.213.10.0/24   ssh: bridge bpmte-sshbr, hub side .1, hosts .11-.13
#   10.213.200.0/24  docker: bridge bpmte-dock0 of the plain engine
#   10.213.201.0/24  ssh: bridge of the Docker engine inside bpmte-ssh1

# log MSG... — progress and notices, always to stderr (stdout of `env` is data).
log() { printf 'testenv: %s\n' "$*" >&2; }

# die MSG... — log and exit 1.
die() {
  log "error: $*"
  exit 1
}

# apt_install PKG... — installs the packages that are not installed yet,
# non-interactively, with `apt-get update` at most once per run. Package
# scripts must not start system services (a system dockerd or sshd would be
# a process we did not start and could not stop by PID), so a policy-rc.d
# that forbids it is put in place for the install when there is none.
_BPMTE_APT_UPDATED=
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt: installing ${missing[*]}"
  if [ -z "$_BPMTE_APT_UPDATED" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
    _BPMTE_APT_UPDATED=1
  fi
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# bpm testenv: no service starts during apt_install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >&2 || rc=$?
  [ -n "$made_policy" ] && rm -f "$policy"
  [ $rc -eq 0 ] || die "apt-get install ${missing[*]} failed"
}

# pidfile NAME — path of NAME's recorded PID.
pidfile() { printf '%s/%s.pid\n' "$BPMTE_PIDS" "$1"; }

# _pid_running PID — true if PID exists and is not a zombie. PID 1 on these
# VMs reaps orphans slowly, so a killed daemon can linger as a zombie.
_pid_running() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# daemon_alive NAME — true if the process recorded for NAME is running.
# Also checks the process start time recorded with the PID: after a reboot or
# a crash the PID may belong to a stranger, which we must never signal.
daemon_alive() {
  local f pid want
  f=$(pidfile "$1")
  [ -f "$f" ] || return 1
  pid=$(head -n1 "$f")
  want=$(sed -n 2p "$f")
  [ -n "$pid" ] && _pid_running "$pid" || return 1
  [ -z "$want" ] || [ "$(_pid_starttime "$pid")" = "$want" ]
}

# _pid_starttime PID — field 22 of /proc/PID/stat (clock ticks since boot); it
# survives exec, so it identifies the process we forked.
_pid_starttime() {
  sed -E "s/^.*\) //" "/proc/$1/stat" 2>/dev/null | awk "{print \$20}"
}

# daemon_pid NAME — prints NAME's recorded PID (empty if none).
daemon_pid() {
  local f
  f=$(pidfile "$1")
  [ -f "$f" ] && head -n1 "$f"
  return 0
}

# start_daemon NAME LOGFILE CMD... — starts CMD detached (new session via
# setsid, stdin from /dev/null, stdout+stderr appended to LOGFILE) and records
# its PID in run/pids/NAME.pid. CMD must stay in the foreground (sshd -D,
# dockerd, ...): the recorded PID is the one we stop. `ip netns exec NS cmd`
# execs in place, so it keeps the PID too.
start_daemon() {
  local name=$1 logf=$2
  shift 2
  mkdir -p "$BPMTE_PIDS" "$(dirname "$logf")"
  if daemon_alive "$name"; then
    log "$name: already running (pid $(daemon_pid "$name"))"
    return 0
  fi
  # A background job of a non-interactive shell is not a process-group
  # leader, so setsid(1) calls setsid() in place instead of forking: $! is
  # the daemon itself.
  # The subshell closes every inherited fd above 2 before exec: a daemon
  # holding the dispatcher's lock file open would block the next `down`
  # forever. exec keeps the subshell's PID, so $! is still the daemon.
  (
    for fd in "/proc/$BASHPID/fd/"*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] && eval "exec $fd>&-"
    done
    exec setsid "$@" </dev/null >>"$logf" 2>&1
  ) &
  local pid=$!
  # Line 2: the start time, checked by daemon_alive before any signal.
  printf "%s\n%s\n" "$pid" "$(_pid_starttime "$pid")" >"$(pidfile "$name")"
  log "$name: started (pid $pid, log $logf)"
}

# stop_daemon NAME [TIMEOUT_S] — SIGTERM to the recorded PID, SIGKILL after
# TIMEOUT_S (default 20), then forgets the PID. A zombie counts as stopped.
# Only ever signals the PID we recorded, and only if it still runs the
# command we started (see daemon_alive).
stop_daemon() {
  local name=$1 timeout=${2:-20} f pid
  f=$(pidfile "$name")
  [ -f "$f" ] || return 0
  pid=$(head -n1 "$f")
  if daemon_alive "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while _pid_running "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if _pid_running "$pid"; then
      log "$name: still running after ${timeout}s, SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 5))
      while _pid_running "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    fi
    log "$name: stopped (pid $pid)"
  fi
  rm -f "$f"
}

# wait_for DESC TIMEOUT_S CMD... — runs CMD every 0.5 s until it succeeds;
# dies with DESC after TIMEOUT_S. Be generous: 2 cores are shared.
wait_for() {
  local desc=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${timeout}s waiting for $desc"
    sleep 0.5
  done
}

# netns_add NAME — creates network namespace NAME (idempotent) with its
# loopback up. Names should start with $BPMTE_PREFIX so verify-clean sees them.
netns_add() {
  if ! ip netns list | awk '{print $1}' | grep -qx "$1"; then
    ip netns add "$1"
  fi
  ip -n "$1" link set lo up
}

# netns_del NAME — deletes network namespace NAME if present (its veth ends
# and namespace-local iptables rules go with it). Processes inside must be
# stopped first or the namespace lingers until they exit.
netns_del() {
  if ip netns list | awk '{print $1}' | grep -qx "$1"; then
    ip netns del "$1"
  fi
}

# link_del NAME — deletes a host-side link (bridge, veth) if present.
link_del() {
  if ip link show "$1" >/dev/null 2>&1; then ip link del "$1"; fi
}

# ---- iptables: every rule lives in a chain of our own ----------------------
# Chains are named BPMTE-<SOMETHING> and hooked from a built-in chain by one
# jump rule, so `down` removes exactly what we added with ipt_chain_del and
# never touches rules of others (kube-proxy, dockerd of other users).

# ipt_chain TABLE CHAIN — creates (or flushes) our chain CHAIN in TABLE.
ipt_chain() {
  iptables -w -t "$1" -N "$2" 2>/dev/null || iptables -w -t "$1" -F "$2"
}

# ipt_rule TABLE CHAIN RULE... — appends RULE to our CHAIN unless present.
ipt_rule() {
  local t=$1 c=$2
  shift 2
  iptables -w -t "$t" -C "$c" "$@" 2>/dev/null || iptables -w -t "$t" -A "$c" "$@"
}

# ipt_hook TABLE BUILTIN CHAIN — inserts one jump from BUILTIN (INPUT,
# FORWARD, POSTROUTING...) to our CHAIN at the top, unless present.
ipt_hook() {
  iptables -w -t "$1" -C "$2" -j "$3" 2>/dev/null || iptables -w -t "$1" -I "$2" 1 -j "$3"
}

# ipt_chain_del TABLE CHAIN — removes every jump to CHAIN from the built-in
# chains of TABLE, then flushes and deletes CHAIN. Missing is fine.
ipt_chain_del() {
  local t=$1 c=$2 b
  command -v iptables >/dev/null || return 0
  iptables -w -t "$t" -S "$c" >/dev/null 2>&1 || return 0
  for b in PREROUTING INPUT FORWARD OUTPUT POSTROUTING; do
    while iptables -w -t "$t" -D "$b" -j "$c" 2>/dev/null; do :; done
  done
  iptables -w -t "$t" -F "$c"
  iptables -w -t "$t" -X "$c"
}

# ipt_our_chains — lists "TABLE CHAIN" for every BPMTE-* chain that exists.
ipt_our_chains() {
  command -v iptables >/dev/null || return 0
  local t
  for t in filter nat mangle raw; do
    iptables -w -t "$t" -S 2>/dev/null | awk -v t="$t" '$1=="-N" && $2 ~ /^BPMTE-/ {print t, $2}'
  done
}

# ---- misc --------------------------------------------------------------------

# port_free PORT — true if nothing listens on TCP PORT on any address.
port_free() {
  ! ss -Htln "sport = :$1" | grep -q .
}

# emit_export VAR VALUE — one `export VAR=value` line, shell-quoted.
emit_export() { printf 'export %s=%q\n' "$1" "$2"; }

# status_line OK|FAIL|DOWN PART DETAIL... — one line of `status` output.
status_line() {
  local s=$1 part=$2
  shift 2
  printf '%-5s %-22s %s\n' "$s" "$part" "$*"
}
