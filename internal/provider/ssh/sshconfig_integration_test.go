package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/testenv"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshConnection asks the host who connected to it: sshd's SSH_CONNECTION
// is "client-ip client-port server-ip server-port".
func sshConnection(t *testing.T, p *Provider, addr string) (client, server string) {
	t.Helper()
	c, err := p.pool.get(context.Background(), addr)
	if err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	out, err := c.run(context.Background(), command("printenv", "SSH_CONNECTION"))
	f := strings.Fields(out)
	if err != nil || len(f) != 4 {
		t.Fatalf("%s: SSH_CONNECTION %q, %v", addr, out, err)
	}
	return f[0], f[2]
}

// TestIntegrationSSHConfig: hosts named by ~/.ssh/config aliases reach the
// machines its HostName, Port, User and IdentityFile say, with no key or
// user in bpm's config, and ProxyJump goes through one test host to
// another, each hop's host key checked against known_hosts.
func TestIntegrationSSHConfig(t *testing.T) {
	env := testenv.Require(t, "ssh")
	ip := func(i int) string { h, _, _ := net.SplitHostPort(env.SSH.Hosts[i]); return h }
	port := func(i int) string { _, p, _ := net.SplitHostPort(env.SSH.Hosts[i]); return p }
	// No agent: the identity must come from IdentityFile.
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	file := filepath.Join(dir, "config")
	text := fmt.Sprintf(`# bpm test
Host bpm-direct
    HostName %s
    Port %s

Host bpm-jump
    HostName %s
    Port %s

Host bpm-behind
    HostName %s
    Port %s
    ProxyJump bpm-jump

Host bpm-*
    User %s
    IdentityFile %s
`, ip(1), port(1), ip(0), port(0), ip(2), port(2), env.SSH.User, env.SSH.Key)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(env, "bpm-direct", "bpm-behind")
	cfg.User, cfg.Key, cfg.SSHConfig = "", "", file
	// The config's Port wins over the remote's port for an alias.
	cfg.Port = 2
	p := newTestProvider(t, cfg)

	if _, server := sshConnection(t, p, p.hosts[0]); server != ip(1) {
		t.Errorf("bpm-direct reached %s, want %s (its HostName)", server, ip(1))
	}
	client, server := sshConnection(t, p, p.hosts[1])
	if server != ip(2) {
		t.Errorf("bpm-behind reached %s, want %s", server, ip(2))
	}
	if client != ip(0) {
		t.Errorf("bpm-behind was reached from %s, want from the jump host %s", client, ip(0))
	}

	// A jump host whose key does not match is refused, whatever the
	// target's key: the jump is a host like any other.
	kh, err := os.ReadFile(env.SSH.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	wrong, _ := ssh.NewPublicKey(pub)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(kh)), "\n") {
		if strings.HasPrefix(l, ip(0)+" ") || strings.HasPrefix(l, "["+ip(0)+"]") {
			l = knownhosts.Line([]string{knownhosts.Normalize(env.SSH.Hosts[0])}, wrong)
		}
		lines = append(lines, l)
	}
	badKH := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(badKH, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg2 := testConfig(env, "bpm-behind")
	cfg2.User, cfg2.Key, cfg2.SSHConfig, cfg2.KnownHosts = "", "", file, badKH
	p2 := newTestProvider(t, cfg2)
	_, err = p2.pool.get(context.Background(), p2.hosts[0])
	if err == nil || !strings.Contains(err.Error(), "does not match") || !strings.Contains(err.Error(), ip(0)) {
		t.Fatalf("jump host with a wrong key: err = %v, want a refusal naming %s", err, ip(0))
	}
}

// TestSSHConfigResolve checks the precedence rules without a network.
func TestSSHConfigResolve(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config")
	os.WriteFile(file, []byte(`
Host a
    HostName 10.0.0.1
    Port 2201
    User alice
    IdentityFile ~/.ssh/id_a
Host b
    HostName %h.example
    ProxyJump carol@a:2222,d
Host d
    ProxyJump a
Host loop
    ProxyJump loop
Host pc
    ProxyCommand nc %h %p
`), 0o600)
	c := NewConfig()
	c.Hosts = []string{"x"}
	c.SSHConfig = file
	c.Runtime.Type = RuntimeNative
	p, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
	hops, err := p.pool.route("a")
	if err != nil || len(hops) != 1 || hops[0].addr != "10.0.0.1:2201" || hops[0].user != "alice" ||
		len(hops[0].identities) != 1 || hops[0].identities[0] != home+"/.ssh/id_a" {
		t.Errorf("a: %+v, %v", hops, err)
	}
	// An explicit port and the remote's user win.
	p.cfg.User = "bob"
	hops, _ = p.pool.route("a:2022")
	if hops[0].addr != "10.0.0.1:2022" || hops[0].user != "bob" {
		t.Errorf("a:2022 with user bob: %+v", hops)
	}
	p.cfg.User = ""
	// b: via a (as carol, port 2222), then d (whose own ProxyJump is not
	// followed in the middle of a chain, as with ssh -J a,d).
	hops, err = p.pool.route("b")
	var got []string
	for _, h := range hops {
		got = append(got, h.user+"@"+h.addr)
	}
	// Hops that name no user log in as the local account, as ssh does.
	me := localUser()
	if me == "" {
		t.Fatal("no local user name")
	}
	want := []string{"carol@10.0.0.1:2222", me + "@d:22", me + "@b.example:22"}
	if err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("b: %v, %v; want %v", got, err, want)
	}
	if _, err := p.pool.route("loop"); err == nil {
		t.Error("a ProxyJump loop was accepted")
	}
	if _, err := p.pool.route("pc"); err == nil || !strings.Contains(err.Error(), "ProxyCommand") {
		t.Errorf("ProxyCommand: err = %v, want refusal", err)
	}
	// A file that cannot be parsed is an error at New, naming it.
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("Match exec \"true\"\n"), 0o600)
	c.SSHConfig = bad
	if _, err := New(c, Options{}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad ssh_config: err = %v", err)
	}
}
