//go:build linux && !bpm_noremote

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Network namespaces for the tests that put a remote's end of the tunnel
// "elsewhere": each test makes its own namespace, linked to this host by a
// veth pair on a /30 of its own, and removes both in Cleanup, also when it
// fails. Names start with bpmte- so `scripts/testenv verify-clean` finds
// leftovers. The /30s come from 10.213.50.0/24, which no testenv component
// uses (see scripts/testenv.d/common.sh for the address plan).

// requireRoot skips a test that needs root (namespaces, veths, TUN), or
// fails it under CI=true, as testenv.Require does for a missing component.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "needs root (creates a network namespace and a veth pair): run as root, as scripts/test does"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: fails instead of skipping)")
	}
	t.Skip(msg)
}

type netns struct {
	t      *testing.T
	name   string
	hostIf string     // host end of the veth
	hostIP netip.Addr // on hostIf: where the namespace reaches this host
	nsIP   netip.Addr // on eth0 inside the namespace
}

// newNetns creates namespace name (loopback up) and a veth pair hostIf <->
// eth0 (inside), addressed from the /30 subnet: the host end gets its
// first host address, the namespace the second.
func newNetns(t *testing.T, name, hostIf string, subnet netip.Prefix) *netns {
	t.Helper()
	requireRoot(t)
	if subnet.Bits() != 30 {
		t.Fatalf("netns %s: want a /30, got %s", name, subnet)
	}
	n := &netns{t: t, name: name, hostIf: hostIf, hostIP: subnet.Addr().Next()}
	n.nsIP = n.hostIP.Next()
	// A run that was killed may have left these behind; they are ours by
	// name, and a fixed name keeps leftovers from piling up.
	n.remove()
	t.Cleanup(n.remove)
	mustCmd(t, "ip", "netns", "add", name)
	mustCmd(t, "ip", "-n", name, "link", "set", "lo", "up")
	mustCmd(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", name)
	mustCmd(t, "ip", "addr", "add", netip.PrefixFrom(n.hostIP, 30).String(), "dev", hostIf)
	mustCmd(t, "ip", "link", "set", hostIf, "up")
	mustCmd(t, "ip", "-n", name, "addr", "add", netip.PrefixFrom(n.nsIP, 30).String(), "dev", "eth0")
	mustCmd(t, "ip", "-n", name, "link", "set", "eth0", "up")
	return n
}

// remove deletes the namespace (its end of the veth goes with it, and so
// the host end) and, should it linger, the host end by name.
func (n *netns) remove() {
	if exec.Command("ip", "netns", "pids", n.name).Run() == nil {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			n.t.Errorf("delete netns %s: %v: %s", n.name, err, out)
		}
	}
	if exec.Command("ip", "link", "show", n.hostIf).Run() == nil {
		if out, err := exec.Command("ip", "link", "del", n.hostIf).CombinedOutput(); err != nil {
			n.t.Errorf("delete link %s: %v: %s", n.hostIf, err, out)
		}
	}
}

// mustCmd runs a command to completion and returns its stdout; a failure
// fails the test with its output.
func mustCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// run runs a command inside the namespace to completion and returns its stdout.
func (n *netns) run(name string, args ...string) string {
	n.t.Helper()
	return mustCmd(n.t, "ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// proc is a process the test started inside a namespace.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // cmd.Wait's, once done is closed
	log  string
}

// start runs a foreground command inside the namespace with its output in
// logFile. `ip netns exec` execs the command in place, so the PID we hold is
// the command's own: Cleanup stops exactly it (SIGTERM, SIGKILL after 10 s)
// before the namespace is removed (Cleanup runs last-registered first), and
// shows its log if the test failed.
func (n *netns) start(logFile string, env []string, name string, args ...string) *proc {
	n.t.Helper()
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Start()
	f.Close()
	if err != nil {
		n.t.Fatalf("start %s in %s: %v", name, n.name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logFile}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	n.t.Cleanup(func() {
		p.stop(10 * time.Second)
		if n.t.Failed() {
			b, _ := os.ReadFile(logFile)
			n.t.Logf("%s log (%s):\n%s", filepath.Base(name), logFile, b)
		}
	})
	return p
}

// stop sends SIGTERM and waits, then SIGKILL; it returns the exit error.
func (p *proc) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// do runs f on an OS thread that has entered the namespace. Sockets f
// creates belong to the namespace for good, so a listener made in f can
// be served from any goroutine afterwards: a service "inside" the
// namespace without a helper binary.
func (n *netns) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		host, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer host.Close()
		target, err := os.Open(filepath.Join("/var/run/netns", n.name))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", n.name, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread ends with this goroutine instead of
			// running others in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("leave netns %s: %w", n.name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
