# shellcheck shell=bash
# wg component: standard WireGuard tools for the interop tests, which run
# wireguard-go in TUN mode inside a network namespace and configure it with
# Debian's `wg`, so bpm's hub is checked against WireGuard as everyone else
# ships it (kernel WireGuard is not available on these machines).
#
#   wireguard-go  built from the Go module proxy: the module root
#                 golang.zx2c4.com/wireguard (its main package) at the
#                 version go.mod requires, so it is the same WireGuard code
#                 bpm links, run as the standalone daemon. Cached in
#                 cache/wireguard-go-<version>/ and kept across `down`.
#   wg, wg-quick  Debian's wireguard-tools.
#
# Nothing runs between tests: each test starts wireguard-go in a namespace of
# its own and stops it by PID, so `down` only forgets nothing and `status` is
# OK once both tools are in place. Running wireguard-go needs root and
# /dev/net/tun; the tests check that themselves.

WG_MODULE=golang.zx2c4.com/wireguard

_wg_version() {
  awk -v m="$WG_MODULE" '$1 == m {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$BPMTE_REPO/go.mod"
}

_wg_go_bin() {
  local v
  v=$(_wg_version)
  [ -n "$v" ] || return 1
  printf '%s/wireguard-go-%s/wireguard-go\n' "$BPMTE_CACHE" "$v"
}

wg_up() {
  apt_install wireguard-tools iproute2
  local v bin tmp
  v=$(_wg_version)
  [ -n "$v" ] || die "wg: $WG_MODULE not found in go.mod"
  bin=$(_wg_go_bin)
  if [ ! -x "$bin" ]; then
    log "wg: building wireguard-go $v"
    mkdir -p "$(dirname "$bin")"
    tmp=$(mktemp -d "$(dirname "$bin")/build.XXXXXX")
    # `go install pkg@version` builds the module on its own, outside this
    # checkout's go.mod; run it from the cache dir so no go.work applies.
    (cd "$tmp" && GOBIN=$tmp CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off \
      go install -trimpath "$WG_MODULE@$v") || {
      rm -rf "$tmp"
      die "wg: building wireguard-go failed"
    }
    mv "$tmp/wireguard" "$bin"
    rm -rf "$tmp"
  fi
  wg_status >/dev/null || die "wg: not usable after install (scripts/testenv status wg)"
}

wg_down() {
  # Nothing runs; the built binary stays in the cache, keyed by version.
  log "wg: down (nothing running; cache kept)"
}

wg_status() {
  local bin
  bin=$(_wg_go_bin) || {
    status_line FAIL wg "$WG_MODULE not in go.mod"
    return 1
  }
  if [ ! -x "$bin" ]; then
    status_line DOWN wg "wireguard-go not built ($bin)"
    return 1
  fi
  if ! command -v wg >/dev/null || ! command -v wg-quick >/dev/null; then
    status_line DOWN wg "wireguard-tools not installed"
    return 1
  fi
  status_line OK wg "$("$bin" --version 2>/dev/null | head -n1), $(wg --version 2>/dev/null | cut -d' ' -f1,2)"
}

wg_env() {
  emit_export BPM_TEST_WIREGUARD_GO "$(_wg_go_bin)"
  emit_export BPM_TEST_WG "$(command -v wg)"
}
