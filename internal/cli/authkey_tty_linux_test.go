package cli

import (
	"strings"
	"testing"
)

// TestAuthKeyNeverPrintsToTerminal: on a real terminal, create refuses
// before the manager mints anything, unless --show says to print.
func TestAuthKeyNeverPrintsToTerminal(t *testing.T) {
	tty := &ttyOut{File: openPTY(t)}
	km := newKeyManager(t)
	errs, code := runKey(t, km.socket, tty, "create", "--service-id", "1")
	if code != ExitUsage || !strings.Contains(errs, "refusing to print the API key to a terminal") || km.hits.Load() != 0 {
		t.Fatalf("create on a terminal: exit %d %q, manager asked %d times", code, errs, km.hits.Load())
	}
	if _, code := runKey(t, km.socket, tty, "create", "--service-id", "1", "--show"); code != 0 || tty.buf.String() != stubKeyKey+"\n" {
		t.Fatalf("create --show: exit %d %q", code, tty.buf.String())
	}
}
