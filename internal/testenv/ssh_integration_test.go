package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func sshConfig(t *testing.T, s SSH, knownHostsFile string) *ssh.ClientConfig {
	t.Helper()
	pem, err := os.ReadFile(s.Key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := knownhosts.New(knownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	return &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKey,
		Timeout:         30 * time.Second,
	}
}

func sshRun(c *ssh.Client, cmd string) (string, error) {
	sess, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	return strings.TrimSpace(string(out)), err
}

func TestIntegrationSSHHosts(t *testing.T) {
	env := Require(t, "ssh")
	if len(env.SSH.Hosts) != 3 {
		t.Fatalf("hosts %v, want 3", env.SSH.Hosts)
	}
	cfg := sshConfig(t, env.SSH, env.SSH.KnownHosts)

	// The hub's UDP port on the host side, as gateways will dial it.
	hub, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(env.SSH.HubAddr)})
	if err != nil {
		t.Fatalf("listen on the hub address: %v", err)
	}
	defer hub.Close()
	hubPort := hub.LocalAddr().(*net.UDPAddr).Port

	for _, h := range env.SSH.Hosts {
		t.Run(h, func(t *testing.T) {
			c, err := ssh.Dial("tcp", h, cfg)
			if err != nil {
				t.Fatalf("dial with host-key verification: %v", err)
			}
			defer c.Close()
			out, err := sshRun(c, "id -un")
			if err != nil || out != env.SSH.User {
				t.Fatalf("id -un: %q, %v", out, err)
			}
			msg := "from " + h
			if out, err := sshRun(c, fmt.Sprintf("echo -n '%s' >/dev/udp/%s/%d", msg, env.SSH.HubAddr, hubPort)); err != nil {
				t.Fatalf("send to the hub: %v: %s", err, out)
			}
			buf := make([]byte, 256)
			_ = hub.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, from, err := hub.ReadFromUDP(buf)
			if err != nil || string(buf[:n]) != msg {
				t.Fatalf("hub got %q from %v, %v; want %q", buf[:n], from, err, msg)
			}
		})
	}
}

func TestIntegrationSSHDockerHost(t *testing.T) {
	env := Require(t, "ssh")
	c, err := ssh.Dial("tcp", env.SSH.DockerHost, sshConfig(t, env.SSH, env.SSH.KnownHosts))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// As the deploy user, not root: the engine must be usable by it.
	out, err := sshRun(c, "docker version --format '{{.Server.Version}}' && test -S "+env.SSH.DockerSocket)
	if err != nil {
		t.Fatalf("docker on %s: %v: %s", env.SSH.DockerHost, err, out)
	}
	// The socket is also reachable through the SSH connection itself, the
	// way an SSH docker runtime dials it.
	conn, err := c.Dial("unix", env.SSH.DockerSocket)
	if err != nil {
		t.Fatalf("dial %s over ssh: %v", env.SSH.DockerSocket, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("GET /_ping HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.0 200") {
		t.Fatalf("_ping over ssh: %q", buf[:n])
	}
}

func TestIntegrationSSHWrongHostKeyRefused(t *testing.T) {
	env := Require(t, "ssh")
	// Every host listed with a key it does not have.
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var lines []string
	for _, h := range env.SSH.Hosts {
		lines = append(lines, knownhosts.Line([]string{knownhosts.Normalize(h)}, wrong))
	}
	wrongFile := filepath.Join(dir, "known_hosts_wrong")
	emptyFile := filepath.Join(dir, "known_hosts_empty")
	if err := os.WriteFile(wrongFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(emptyFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, h := range env.SSH.Hosts {
		for name, file := range map[string]string{"mismatched": wrongFile, "unknown": emptyFile} {
			c, err := ssh.Dial("tcp", h, sshConfig(t, env.SSH, file))
			if err == nil {
				c.Close()
				t.Fatalf("%s: %s host key accepted", h, name)
			}
			var ke *knownhosts.KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("%s: %s host key: %v, want a knownhosts.KeyError", h, name, err)
			}
			if (name == "mismatched") != (len(ke.Want) > 0) {
				t.Errorf("%s: %s host key: KeyError.Want = %v", h, name, ke.Want)
			}
		}
	}
}
