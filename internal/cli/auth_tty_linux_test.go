package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bpm-project/bpm/internal/authclient"
	"github.com/bpm-project/bpm/internal/registry"
)

// openPTY opens a real pseudo-terminal and returns its terminal side, so
// the terminal check is exercised as a user hits it, not through a stub.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ttyOut is a real terminal (its Fd is the pty's) whose writes are kept
// for the test instead of being sent to the pty.
type ttyOut struct {
	*os.File
	buf bytes.Buffer
}

func (w *ttyOut) Write(p []byte) (int, error) { return w.buf.Write(p) }

// TestAuthNeverPrintsSecretsToTerminal: on a terminal, login and token
// refuse (exit 2) before asking the proxy for anything — no API key is
// minted to be lost — unless told where the secret goes.
func TestAuthNeverPrintsSecretsToTerminal(t *testing.T) {
	tty := &ttyOut{File: openPTY(t)}
	if !isTerminal(tty) {
		t.Fatal("a pty is not detected as a terminal")
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "owner.key")
	k, _ := authclient.GenerateKeyFile(keyFile, registry.KeyTypeEcdsa)
	p := startAuthProxy(t, k)

	stderr, code := runAuth(t, tty, "", "login", "--proxy", p.url, "--service-id", "7", "--key", keyFile)
	if code != ExitUsage || !strings.Contains(stderr, "refusing to print the API key to a terminal") {
		t.Fatalf("login to a terminal: %d %s", code, stderr)
	}
	if n := p.keysIssued(); n != 0 {
		t.Fatalf("the proxy minted %d keys for a login that was refused", n)
	}
	if tty.buf.Len() != 0 {
		t.Fatalf("wrote to the terminal: %q", tty.buf.String())
	}

	// --save: works on a terminal, and the terminal gets nothing secret.
	apiKeyFile := filepath.Join(dir, "api.key")
	stderr, code = runAuth(t, tty, "", "login", "--proxy", p.url, "--service-id", "7", "--key", keyFile, "--save", apiKeyFile)
	if code != 0 {
		t.Fatalf("login --save on a terminal: %d %s", code, stderr)
	}
	saved, _ := os.ReadFile(apiKeyFile)
	key := strings.TrimSpace(string(saved))
	if key == "" || strings.Contains(tty.buf.String(), key) || strings.Contains(stderr, key) {
		t.Fatalf("key printed on the terminal or missing from the file")
	}

	// token follows the same rule.
	stderr, code = runAuth(t, tty, "", "token", "--proxy", p.url, "--api-key-file", apiKeyFile)
	if code != ExitUsage || !strings.Contains(stderr, "refusing to print the access token") {
		t.Fatalf("token to a terminal: %d %s", code, stderr)
	}

	// --show is the explicit override.
	tty.buf.Reset()
	if _, code = runAuth(t, tty, "", "token", "--proxy", p.url, "--api-key-file", apiKeyFile, "--show"); code != 0 || !strings.HasPrefix(tty.buf.String(), "v4.local.") {
		t.Fatalf("token --show: %d %q", code, tty.buf.String())
	}
}
