package testenv

// WireGuard is the wg component (scripts/testenv.d/wg.sh): the standard
// WireGuard tools, for interop tests. Nothing of it runs between tests; a
// test starts WireGuardGo itself, as root, in a network namespace of its
// own.
type WireGuard struct {
	WireGuardGo string // wireguard-go built from the module version go.mod requires
	WG          string // Debian's wg (wireguard-tools); wg-quick sits beside it
}

// The wg component lives in its own file so that adding it touches nothing
// the other components' code does.
func init() {
	required["wg"] = []string{"BPM_TEST_WIREGUARD_GO", "BPM_TEST_WG"}
}

// WireGuard returns the wg component's settings (after Require(t, "wg")).
func (e *Env) WireGuard() WireGuard {
	return WireGuard{WireGuardGo: e.vars["BPM_TEST_WIREGUARD_GO"], WG: e.vars["BPM_TEST_WG"]}
}
