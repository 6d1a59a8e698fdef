package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

var bpmBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bpm-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bpmBin = filepath.Join(dir, "bpm")
	args := []string{"build", "-o", bpmBin}
	if tags := os.Getenv("BPM_E2E_TAGS"); tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, "github.com/bpm-project/bpm/cmd/bpm")
	cmd := exec.Command("go", args...)
	// Static, as released: remote providers pack this binary into the
	// gateway image, which has no libc.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build bpm:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one isolated bpm installation: config, data and runtime dirs under
// a temp dir, and an echo package on a free port.
type env struct {
	t       testing.TB
	root    string
	pkg     string
	port    int
	vars    []string
	bin     string // the bpm binary to run; bpmBin when empty
	mgr     *exec.Cmd
	mgrDone chan struct{}
}

func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newEnv(t testing.TB) *env {
	t.Helper()
	// Short paths: unix socket paths are limited to 108 bytes.
	root, err := os.MkdirTemp("", "bpm-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, root: root, port: freePort(t)}
	cfgDir := filepath.Join(root, "cfg")
	must(t, os.MkdirAll(cfgDir, 0o700))
	must(t, os.WriteFile(filepath.Join(cfgDir, "config.toml"), []byte(fmt.Sprintf(`
[manager]
data_dir = %q
runtime_dir = %q
log_level = "debug"

# A free port each, so parallel tests (and a real bpm on 8276) never clash.
[proxy]
listen = "127.0.0.1:0"
`, filepath.Join(root, "data"), filepath.Join(root, "run"))), 0o600))
	// The echo example, on a port of its own so tests never collide.
	e.pkg = filepath.Join(root, "echo")
	must(t, os.MkdirAll(e.pkg, 0o755))
	must(t, os.WriteFile(filepath.Join(e.pkg, "blueprint.toml"), []byte(fmt.Sprintf(`
name = "echo"
version = "0.1.0"
blueprint_id = 1

[[sources]]
kind = "testing"
dir = %q

[resources]
cpu = "0.1"
memory = "64Mi"

[[ports]]
name = "http"
port = %d

[env]
PORT = "%d"

[health]
http = "/healthz"
interval = "1s"
timeout = "500ms"
`, filepath.Join(repoRoot(t), "examples", "echo"), e.port, e.port)), 0o644))
	e.vars = append(os.Environ(),
		"BPM_CONFIG_DIR="+cfgDir,
		"NO_COLOR=1",
		"BPM_E2E_SENTINEL=must-not-leak",
	)
	t.Cleanup(e.cleanup)
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// run runs bpm to completion and returns stdout, stderr and the exit code.
func (e *env) run(args ...string) (string, string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.binary(), args...)
	cmd.Env = e.vars
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("bpm %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func (e *env) mustRun(args ...string) string {
	e.t.Helper()
	out, errs, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("bpm %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func (e *env) binary() string {
	if e.bin != "" {
		return e.bin
	}
	return bpmBin
}

func (e *env) startManager() {
	e.t.Helper()
	cmd := exec.Command(e.binary(), "manager")
	cmd.Env = e.vars
	logf, err := os.OpenFile(filepath.Join(e.root, "manager.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	must(e.t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(e.t, cmd.Start())
	logf.Close()
	e.mgr = cmd
	e.mgrDone = make(chan struct{})
	go func() { cmd.Wait(); close(e.mgrDone) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, code := e.run("list"); code == 0 {
			return
		}
		select {
		case <-e.mgrDone:
			e.t.Fatalf("manager exited early:\n%s", e.managerLog())
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("manager did not answer:\n%s", e.managerLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) managerLog() string {
	b, _ := os.ReadFile(filepath.Join(e.root, "manager.log"))
	return string(b)
}

func (e *env) stopManager(sig syscall.Signal) {
	e.t.Helper()
	if e.mgr == nil {
		return
	}
	e.mgr.Process.Signal(sig)
	select {
	case <-e.mgrDone:
	case <-time.After(30 * time.Second):
		e.mgr.Process.Kill()
		<-e.mgrDone
		e.t.Errorf("manager did not stop on %v", sig)
	}
	e.mgr = nil
}

func (e *env) cleanup() {
	// Terminate whatever the test left, then stop the manager.
	if e.mgr != nil {
		out, _, _ := e.run("list", "-o", "json")
		var list []map[string]any
		json.Unmarshal([]byte(out), &list)
		for _, in := range list {
			e.run("terminate", in["id"].(string))
		}
		e.stopManager(syscall.SIGTERM)
	}
	if e.t.Failed() {
		e.t.Logf("manager log:\n%s", e.managerLog())
	}
	os.RemoveAll(e.root)
}

type instance struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Address   string `json:"address"`
	ServiceID uint64 `json:"service_id"`
	Message   string `json:"message"`
}

func (e *env) list(all bool) []instance {
	e.t.Helper()
	args := []string{"list", "-o", "json"}
	if all {
		args = append(args, "--all")
	}
	var out []instance
	must(e.t, json.Unmarshal([]byte(e.mustRun(args...)), &out))
	return out
}

func (e *env) waitState(id, want string) instance {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last instance
	for time.Now().Before(deadline) {
		var d instance
		must(e.t, json.Unmarshal([]byte(e.mustRun("status", "--instance", id, "-o", "json")), &d))
		if d.State == want {
			return d
		}
		last = d
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatalf("instance %s: state %q (%s), want %q", id, last.State, last.Message, want)
	return last
}

func get(t *testing.T, url string) (string, error) {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestIntegrationDeployCrashReattach is the foundation's promise: an instance
// deployed through the manager keeps running when the manager is killed, is
// re-attached (listed once, not started twice) by the next manager, and can
// then be terminated.
func TestIntegrationDeployCrashReattach(t *testing.T) {
	e := newEnv(t)
	e.startManager()

	var inst instance
	must(t, json.Unmarshal([]byte(e.mustRun("deploy", "--package", e.pkg, "-o", "json")), &inst))
	if !strings.HasPrefix(inst.ID, "bp-") {
		t.Fatalf("instance id %q does not start with bp-", inst.ID)
	}
	running := e.waitState(inst.ID, "running")
	url := "http://" + running.Address + "/"
	body, err := get(t, url)
	if err != nil {
		t.Fatalf("echo does not answer at %s: %v", url, err)
	}
	if !strings.Contains(body, `"SERVICE_ID"`) {
		t.Errorf("echo reply lacks the SDK env: %s", body)
	}
	if strings.Contains(body, "must-not-leak") {
		t.Errorf("the manager's own environment leaked into the instance: %s", body)
	}

	e.stopManager(syscall.SIGKILL)
	if _, err := get(t, url); err != nil {
		t.Fatalf("instance died with the manager: %v", err)
	}

	e.startManager()
	list := e.list(false)
	if len(list) != 1 || list[0].ID != inst.ID {
		t.Fatalf("after restart, list = %+v, want exactly %s", list, inst.ID)
	}
	e.waitState(inst.ID, "running")

	e.mustRun("terminate", "--instance", inst.ID)
	if _, err := get(t, url); err == nil {
		t.Fatalf("instance still answers after terminate")
	}
	all := e.list(true)
	if len(all) != 1 || all[0].State != "terminated" {
		t.Fatalf("after terminate, list --all = %+v", all)
	}
	// Terminate is idempotent.
	e.mustRun("terminate", inst.ID)
}

// TestIntegrationUp runs the README's first command: bpm up serves the echo
// instance, and Ctrl-C (SIGINT) terminates it.
func TestIntegrationUp(t *testing.T) {
	e := newEnv(t)
	cmd := exec.Command(bpmBin, "up", "--package", e.pkg)
	cmd.Env = e.vars
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	must(t, cmd.Start())
	done := make(chan error, 1)
	proxyURL := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "answering at ") {
				done <- nil
				// The proxy's URL follows the instance's address.
				for sc.Scan() {
					if u, ok := strings.CutPrefix(sc.Text(), "auth proxy at "); ok {
						proxyURL <- u
						break
					}
				}
				io.Copy(io.Discard, stdout)
				return
			}
		}
		done <- fmt.Errorf("bpm up ended without an address")
	}()
	select {
	case err := <-done:
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%v\nstderr: %s", err, stderr.String())
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("bpm up printed no address\nstderr: %s", stderr.String())
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", e.port)
	if body, err := get(t, url); err != nil || !strings.Contains(body, "ok") {
		t.Fatalf("echo not answering at %s: %q %v", url, body, err)
	}
	select {
	case u := <-proxyURL:
		// The proxy answers, and only with a token.
		resp, err := http.Get(u)
		if err != nil {
			t.Fatalf("auth proxy at %s: %v", u, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("auth proxy without a token: %s, want 401", resp.Status)
		}
		// The hint works as printed: an operator key, a token, and the
		// request reaches echo through the proxy.
		dir := t.TempDir()
		keyFile, tokFile := filepath.Join(dir, "api.key"), filepath.Join(dir, "token")
		e.mustRun("auth", "key", "create", "--service-id", "1", "--save", keyFile)
		e.mustRun("auth", "token", "--proxy", strings.TrimSuffix(u, "/"), "--api-key-file", keyFile, "--save", tokFile)
		tok, err := os.ReadFile(tokFile)
		must(t, err)
		req, _ := http.NewRequest("GET", strings.TrimSuffix(u, "/")+"/through-the-proxy", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"path": "/through-the-proxy"`) {
			t.Fatalf("request with a token through the proxy: %s %s", resp.Status, body)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("bpm up printed no proxy URL\nstderr: %s", stderr.String())
	}
	must(t, cmd.Process.Signal(os.Interrupt))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("bpm up exit: %v\nstderr: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "bpm auth key create --service-id 1") {
		t.Fatalf("bpm up gave no token hint\nstderr: %s", stderr.String())
	}
	if _, err := get(t, url); err == nil {
		t.Fatalf("instance still answers after bpm up was interrupted")
	}
}
