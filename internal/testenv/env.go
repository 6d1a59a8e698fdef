package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bpm-project/bpm/internal/testenv/udprelay"
)

// Docker is the docker component: two engines on this host.
type Docker struct {
	Host          string // unix:// socket of the plain engine
	TLSHost       string // tcp://127.0.0.1:PORT of the mutual-TLS engine
	TLSCA         string // CA that signed the TLS engine's server and client certs
	TLSCert       string // client certificate the TLS engine accepts
	TLSKey        string
	UntrustedCert string // client certificate from another CA: must be refused
	UntrustedKey  string
	BridgeGateway string // host address on the plain engine's bridge
	Image         string // the test image (an HTTP server on :8080), in every engine
	ImageArchive  string // `docker save` archive of Image, for other runtimes
}

// SSH is the ssh component: three OpenSSH hosts in network namespaces.
type SSH struct {
	Hosts        []string // "ip:port" of each host
	User         string   // non-root deploy user
	Key          string   // private key file (ed25519) of User
	KnownHosts   string   // known_hosts file listing every host's key
	DockerHost   string   // "ip:port" of the host that also runs a Docker engine
	DockerSocket string   // that engine's socket path, as seen on that host
	HubAddr      string   // host-side IP the hosts reach this machine at
}

// Relay is the relay component: a bpm-udprelay process.
type Relay struct {
	Addr    string // UDP address to send to from this host ("127.0.0.1:PORT")
	Port    int    // its UDP port on every address (use HubAddr:Port from namespaces)
	Control string // base URL of its control API
}

// Client drives the relay's control API.
func (r Relay) Client() *udprelay.Client { return udprelay.NewClient(r.Control) }

// Kubernetes is the kubernetes component: a single-node cluster.
type Kubernetes struct {
	Kubeconfig string // kubeconfig with contexts bpm-test-a and bpm-test-b
}

// Env holds the settings of the components a test required.
type Env struct {
	Docker     Docker
	SSH        SSH
	Relay      Relay
	Kubernetes Kubernetes
	vars       map[string]string
}

// Var returns any BPM_TEST* variable, for settings without a field.
func (e *Env) Var(name string) string { return e.vars[name] }

// required lists, per component, the variables that say it is up.
var required = map[string][]string{
	"docker": {"BPM_TEST_DOCKER_HOST", "BPM_TEST_DOCKER_TLS_HOST", "BPM_TEST_DOCKER_TLS_CA",
		"BPM_TEST_DOCKER_TLS_CERT", "BPM_TEST_DOCKER_TLS_KEY", "BPM_TEST_DOCKER_UNTRUSTED_CERT",
		"BPM_TEST_DOCKER_UNTRUSTED_KEY", "BPM_TEST_IMAGE"},
	"ssh": {"BPM_TEST_SSH_HOSTS", "BPM_TEST_SSH_USER", "BPM_TEST_SSH_KEY", "BPM_TEST_SSH_KNOWN_HOSTS",
		"BPM_TEST_SSH_DOCKER_HOST", "BPM_TEST_SSH_DOCKER_SOCKET", "BPM_TEST_HUB_ADDR"},
	"relay":      {"BPM_TEST_RELAY_ADDR", "BPM_TEST_RELAY_PORT", "BPM_TEST_RELAY_CONTROL"},
	"kubernetes": {"BPM_TEST_KUBECONFIG"},
}

// Require returns the settings of the named components ("docker", "ssh",
// "relay", "kubernetes"). If one is not up it skips the test, or fails it
// when CI=true.
func Require(t testing.TB, components ...string) *Env {
	t.Helper()
	env, err := Lookup(components...)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: a missing component fails the test)", err)
		}
		t.Skip(err)
	}
	return env
}

// Lookup is Require without a test: an error names what is missing and how
// to start it.
func Lookup(components ...string) (*Env, error) {
	vars := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "BPM_TEST") {
			vars[k] = v
		}
	}
	if missing(vars, components) != nil {
		// Not exported by the caller: ask the script (once per process).
		for k, v := range scriptVars() {
			if _, ok := vars[k]; !ok {
				vars[k] = v
			}
		}
	}
	for _, c := range components {
		if _, ok := required[c]; !ok {
			return nil, fmt.Errorf("testenv: unknown component %q", c)
		}
	}
	if m := missing(vars, components); m != nil {
		var down, unset []string
		for _, c := range components {
			if vs, ok := m[c]; ok {
				down = append(down, c)
				unset = append(unset, vs...)
			}
		}
		return nil, fmt.Errorf("testenv: %s not up (%s unset); start with: scripts/testenv up %s",
			strings.Join(down, ", "), strings.Join(unset, ", "), strings.Join(down, " "))
	}
	return fromVars(vars), nil
}

// missing maps each component with unset variables to those variables.
func missing(vars map[string]string, components []string) map[string][]string {
	var m map[string][]string
	for _, c := range components {
		for _, v := range required[c] {
			if vars[v] == "" {
				if m == nil {
					m = map[string][]string{}
				}
				m[c] = append(m[c], v)
			}
		}
	}
	return m
}

func fromVars(v map[string]string) *Env {
	port, _ := strconv.Atoi(v["BPM_TEST_RELAY_PORT"])
	return &Env{
		Docker: Docker{
			Host: v["BPM_TEST_DOCKER_HOST"], TLSHost: v["BPM_TEST_DOCKER_TLS_HOST"],
			TLSCA: v["BPM_TEST_DOCKER_TLS_CA"], TLSCert: v["BPM_TEST_DOCKER_TLS_CERT"],
			TLSKey: v["BPM_TEST_DOCKER_TLS_KEY"], UntrustedCert: v["BPM_TEST_DOCKER_UNTRUSTED_CERT"],
			UntrustedKey: v["BPM_TEST_DOCKER_UNTRUSTED_KEY"], BridgeGateway: v["BPM_TEST_DOCKER_BRIDGE_GATEWAY"],
			Image: v["BPM_TEST_IMAGE"], ImageArchive: v["BPM_TEST_IMAGE_ARCHIVE"],
		},
		SSH: SSH{
			Hosts: strings.Fields(v["BPM_TEST_SSH_HOSTS"]), User: v["BPM_TEST_SSH_USER"],
			Key: v["BPM_TEST_SSH_KEY"], KnownHosts: v["BPM_TEST_SSH_KNOWN_HOSTS"],
			DockerHost: v["BPM_TEST_SSH_DOCKER_HOST"], DockerSocket: v["BPM_TEST_SSH_DOCKER_SOCKET"],
			HubAddr: v["BPM_TEST_HUB_ADDR"],
		},
		Relay:      Relay{Addr: v["BPM_TEST_RELAY_ADDR"], Port: port, Control: v["BPM_TEST_RELAY_CONTROL"]},
		Kubernetes: Kubernetes{Kubeconfig: v["BPM_TEST_KUBECONFIG"]},
		vars:       v,
	}
}

var (
	scriptOnce sync.Once
	scriptEnv  map[string]string
)

// scriptVars runs `scripts/testenv env` and parses its export lines; any
// failure (no script, not root, nothing up) just yields nothing, and the
// caller reports the missing component.
func scriptVars() map[string]string {
	scriptOnce.Do(func() {
		root := RepoRoot()
		if root == "" {
			return
		}
		cmd := exec.Command(filepath.Join(root, "scripts", "testenv"), "env")
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			return
		}
		scriptEnv = ParseExports(out)
	})
	return scriptEnv
}

// ParseExports reads the `export NAME=value` lines `scripts/testenv env`
// prints (values quoted by bash's printf %q: backslash escapes).
func ParseExports(b []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "export ")
		if !ok {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		m[k] = unquote(v)
	}
	return m
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return s[1 : len(s)-1]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// RepoRoot is the checkout's root directory (the one holding
// scripts/testenv), or "" if it cannot be found.
func RepoRoot() string {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		root := filepath.Join(filepath.Dir(file), "..", "..")
		if _, err := os.Stat(filepath.Join(root, "scripts", "testenv")); err == nil {
			return filepath.Clean(root)
		}
	}
	// Built with -trimpath: ask the go command where the module is.
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return ""
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return ""
	}
	return filepath.Dir(gomod)
}
