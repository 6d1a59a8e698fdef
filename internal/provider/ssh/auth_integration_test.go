package ssh

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/testenv"
)

// startAgent runs a real ssh-agent on a socket of the test's own, stopped
// by its pid at cleanup, and returns the socket.
func startAgent(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatalf("ssh-agent: %v (openssh-client is part of the ssh component)", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		if i > 100 {
			t.Fatal("ssh-agent did not create its socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// copyKey copies the test key to a private file the test may change.
func copyKey(t *testing.T, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestIntegrationAgent: with no key set, the keys of the ssh-agent at
// $SSH_AUTH_SOCK log in; an agent without the host's key does not.
func TestIntegrationAgent(t *testing.T) {
	env := testenv.Require(t, "ssh")
	sock := startAgent(t)
	t.Setenv("SSH_AUTH_SOCK", sock)
	cfg := testConfig(env, env.SSH.Hosts[0])
	cfg.Key = ""

	empty := newTestProvider(t, cfg)
	if _, err := empty.pool.get(context.Background(), empty.hosts[0]); err == nil {
		t.Fatal("logged in with an empty agent: the test would prove nothing")
	}

	add := exec.Command("ssh-add", "-q", copyKey(t, env.SSH.Key))
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}
	p := newTestProvider(t, cfg)
	c, err := p.pool.get(context.Background(), p.hosts[0])
	if err != nil {
		t.Fatalf("login with the agent's key: %v", err)
	}
	if out, err := c.run(context.Background(), command("id", "-un")); err != nil || strings.TrimSpace(out) != env.SSH.User {
		t.Fatalf("id -un = %q, %v", out, err)
	}
}

// TestIntegrationKeyPassphrase: an encrypted key (the test key,
// re-encrypted by ssh-keygen -p) logs in with key_passphrase; without it
// the error says what to set, and a wrong one is refused without being
// repeated in the error.
func TestIntegrationKeyPassphrase(t *testing.T) {
	env := testenv.Require(t, "ssh")
	t.Setenv("SSH_AUTH_SOCK", "")
	const pass = "correct horse 'battery' $(staple)"
	key := copyKey(t, env.SSH.Key)
	// -N reaches ssh-keygen as one argv element: no shell in between.
	if out, err := exec.Command("ssh-keygen", "-q", "-p", "-P", "", "-N", pass, "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -p: %v: %s", err, out)
	}
	if b, _ := os.ReadFile(key); !strings.Contains(string(b), "OPENSSH PRIVATE KEY") {
		t.Fatalf("unexpected key format")
	}

	try := func(p string) error {
		cfg := testConfig(env, env.SSH.Hosts[0])
		cfg.Key, cfg.KeyPassphrase = key, config.Secret(p)
		pr := newTestProvider(t, cfg)
		_, err := pr.pool.get(context.Background(), pr.hosts[0])
		return err
	}
	if err := try(""); err == nil || !strings.Contains(err.Error(), "key_passphrase") {
		t.Errorf("encrypted key without passphrase: err = %v, want one naming key_passphrase", err)
	}
	const wrong = "not-the-passphrase-x9"
	if err := try(wrong); err == nil {
		t.Error("a wrong passphrase was accepted")
	} else if strings.Contains(err.Error(), wrong) {
		t.Errorf("the error repeats the passphrase: %v", err)
	}
	if err := try(pass); err != nil {
		t.Fatalf("encrypted key with its passphrase: %v", err)
	}
}

// TestSkippedIdentityFilesNamed: with no key, no agent, and IdentityFiles
// that cannot be used (missing, encrypted), the error names each and why,
// instead of asking for an IdentityFile that was given.
func TestSkippedIdentityFilesNamed(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	missing := dir + "/id_missing"
	garbage := dir + "/id_garbage"
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &pool{logger: slog.New(slog.DiscardHandler), cfg: NewConfig()}
	_, _, err := p.authMethods([]string{missing, garbage})
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), garbage) || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("err = %v, want one naming both files and why", err)
	}
}
