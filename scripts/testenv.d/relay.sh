# shellcheck shell=bash
# Relay component: the UDP impairment relay (cmd/bpm-udprelay) as a process,
# so a WireGuard gateway in a network namespace (or a pod) can reach the hub
# through it. It listens on UDP 0.0.0.0:$BPM_TESTENV_RELAY_PORT (default
# 51830): namespaces use $BPM_TEST_HUB_ADDR:port, local tests 127.0.0.1:port.
# Its upstream defaults to 127.0.0.1:51820; a test points it at its own hub
# with the control API (POST /config {"upstream":"127.0.0.1:PORT"}), which
# listens on a loopback port chosen by the kernel and written to a file.
# The binary is built from this checkout, cached by a hash of its sources.

RELAY_RUN=$BPMTE_RUN/relay
RELAY_PORT=${BPM_TESTENV_RELAY_PORT:-51830}
RELAY_UPSTREAM=${BPM_TESTENV_RELAY_UPSTREAM:-127.0.0.1:51820}

_relay_bin() {
  local h
  h=$(cd "$BPMTE_REPO" && cat cmd/bpm-udprelay/*.go internal/testenv/udprelay/*.go go.mod | sha256sum | cut -c1-12)
  printf '%s/bpm-udprelay-%s/bpm-udprelay\n' "$BPMTE_CACHE" "$h"
}

_relay_healthy() {
  [ -f "$RELAY_RUN/control.addr" ] &&
    curl -fsS --max-time 3 "http://$(cat "$RELAY_RUN/control.addr")/healthz" >/dev/null 2>&1
}

relay_up() {
  if relay_status >/dev/null 2>&1; then
    log "relay: already up"
    return 0
  fi
  apt_install curl
  local bin
  bin=$(_relay_bin)
  if [ ! -x "$bin" ]; then
    log "relay: building bpm-udprelay"
    mkdir -p "$(dirname "$bin")"
    (cd "$BPMTE_REPO" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
      -o "$bin.tmp" ./cmd/bpm-udprelay) || die "relay: build failed"
    mv "$bin.tmp" "$bin"
  fi
  mkdir -p "$RELAY_RUN"
  stop_daemon relay 5 # a stale one (unhealthy or an older binary)
  rm -f "$RELAY_RUN/control.addr"
  start_daemon relay "$RELAY_RUN/relay.log" "$bin" -listen "0.0.0.0:$RELAY_PORT" \
    -upstream "$RELAY_UPSTREAM" -control 127.0.0.1:0 -control-addr-file "$RELAY_RUN/control.addr"
  wait_for "relay control API (log $RELAY_RUN/relay.log)" 30 _relay_healthy
}

relay_down() {
  stop_daemon relay 10
  rm -rf "$RELAY_RUN"
  log "relay: down"
}

relay_status() {
  if ! daemon_alive relay; then
    status_line DOWN relay "not running"
    return 1
  fi
  if ! _relay_healthy; then
    status_line FAIL relay "control API not answering (log $RELAY_RUN/relay.log)"
    return 1
  fi
  status_line OK relay "udp 0.0.0.0:$RELAY_PORT, control http://$(cat "$RELAY_RUN/control.addr")"
}

relay_env() {
  emit_export BPM_TEST_RELAY_ADDR "127.0.0.1:$RELAY_PORT"
  emit_export BPM_TEST_RELAY_PORT "$RELAY_PORT"
  emit_export BPM_TEST_RELAY_CONTROL "http://$(cat "$RELAY_RUN/control.addr")"
}
