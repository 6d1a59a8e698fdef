package ssh

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/providertest"
	"github.com/bpm-project/bpm/internal/testenv"
)

// netnsOf finds the testenv network namespace that holds ip: each test
// host is an sshd in a namespace of its own.
func netnsOf(t *testing.T, ip string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		addrs, err := exec.Command("ip", "-n", f[0], "-o", "addr", "show").Output()
		if err == nil && strings.Contains(string(addrs), " "+ip+"/") {
			return f[0]
		}
	}
	t.Fatalf("no network namespace holds %s", ip)
	return ""
}

// cutHost makes host (ip:port) stop answering on its SSH port, inside the
// host's own namespace, so nothing outside the test host is touched:
// "reset" refuses and resets (sshd gone: connections die at once), "drop"
// swallows packets (a link cut: connections go silent). The returned func
// restores the host; it is also registered as cleanup, so the environment
// is never left broken by a failing test.
func cutHost(t *testing.T, host, mode string) func() {
	t.Helper()
	ip, port, err := net.SplitHostPort(host)
	if err != nil {
		t.Fatal(err)
	}
	ns := netnsOf(t, ip)
	rule := []string{"INPUT", "-p", "tcp", "--dport", port, "-m", "comment", "--comment", "bpm-ssh-test-" + randHex(4)}
	switch mode {
	case "reset":
		rule = append(rule, "-j", "REJECT", "--reject-with", "tcp-reset")
	case "drop":
		rule = append(rule, "-j", "DROP")
	default:
		t.Fatalf("cutHost: mode %q", mode)
	}
	ipt := func(op string) error {
		args := append([]string{"netns", "exec", ns, "iptables", op}, rule...)
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return errors.New(strings.TrimSpace(string(out)) + ": " + err.Error())
		}
		return nil
	}
	if err := ipt("-I"); err != nil {
		t.Fatalf("cut %s: %v", host, err)
	}
	t.Logf("cut %s (%s in %s)", host, mode, ns)
	var once sync.Once
	restore := func() {
		once.Do(func() {
			if err := ipt("-D"); err != nil {
				t.Errorf("restore %s: %v", host, err)
				return
			}
			t.Logf("restored %s", host)
		})
	}
	t.Cleanup(restore)
	return restore
}

// TestIntegrationHostLostMidDeploy: the host a deploy was placed on stops
// answering half way through it (after bpm is uploaded, before the
// service binary is), once as sshd gone and once as a silent link cut.
// The deploy fails soon with an error that names the host and matches
// ErrUnavailable; nothing of the instance is listed or left running on
// that host once it is back; and the next deploy, with the host still
// gone, goes to the other host.
func TestIntegrationHostLostMidDeploy(t *testing.T) {
	env := testenv.Require(t, "ssh")
	if len(env.SSH.Hosts) < 3 {
		t.Fatalf("need three test hosts, have %v", env.SSH.Hosts)
	}
	for _, mode := range []string{"reset", "drop"} {
		t.Run(mode, func(t *testing.T) {
			hosts := []string{addrOf(env.SSH.Hosts[1]), addrOf(env.SSH.Hosts[2])}
			p := newTestProvider(t, testConfig(env, hosts...))
			// Short, so a silent host is noticed in about a second.
			p.pool.keepAlive, p.pool.dialTimeout = 300*time.Millisecond, 2*time.Second
			self := p.opts.Binary
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			var cut string
			var restore func()
			p.opts.Executable = func(_ context.Context, pkg *blueprint.Package, _ Platform) (string, []string, error) {
				// Mid-deploy: placement has chosen the host and bpm is
				// on it; the service binary is next.
				if pkg.Manifest.Name == "doomed" && restore == nil {
					p.mu.Lock()
					for _, h := range p.placing {
						cut = h
					}
					p.mu.Unlock()
					restore = cutHost(t, cut, mode)
				}
				return self, nil, nil
			}

			pkg := testPackage(t)
			pkg.Manifest.Name = "doomed"
			doomed := provider.DeployRequest{InstanceID: providertest.NewInstanceID(), Remote: "homelab", Package: pkg, Env: pkg.Manifest.Env}
			start := time.Now()
			_, err := p.Deploy(ctx, doomed)
			took := time.Since(start)
			if restore == nil {
				t.Fatal("the deploy never reached the point where the host is cut")
			}
			if err == nil {
				t.Fatal("deploy succeeded although its host was cut mid-deploy")
			}
			t.Logf("deploy error after %v: %v", took, err)
			if !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), cut) || !strings.Contains(err.Error(), "lost") {
				t.Errorf("error %q: want ErrUnavailable, naming host %s and saying the connection was lost", err, cut)
			}
			if took > 20*time.Second {
				t.Errorf("the failed deploy took %v: a lost host must be noticed in seconds", took)
			}
			other := hosts[0]
			if other == cut {
				other = hosts[1]
			}

			// The host is still gone: the next deploy goes to the other.
			pkg2 := testPackage(t)
			next := provider.DeployRequest{InstanceID: providertest.NewInstanceID(), Remote: "homelab", Package: pkg2, Env: pkg2.Manifest.Env}
			h, err := p.Deploy(ctx, next)
			if err != nil {
				t.Fatalf("next deploy with %s gone: %v", cut, err)
			}
			nref := provider.Ref{InstanceID: next.InstanceID, Remote: "homelab", Handle: h}
			t.Cleanup(func() { p.Terminate(context.Background(), nref) })
			if hd, _ := decodeHandle(h); hd.Host != other {
				t.Fatalf("next deploy went to %s, want %s (%s is gone)", hd.Host, other, cut)
			}
			waitRunning(ctx, t, p, nref)
			// While the host is gone the doomed instance is not known to be
			// anywhere, and not running.
			if st, err := p.Status(ctx, provider.Ref{InstanceID: doomed.InstanceID}); err == nil {
				t.Errorf("status of the failed instance with its host gone: %+v, want an error", st)
			}

			restore()
			// Back: the doomed instance is nowhere, the other runs once, and
			// terminating the doomed one (as the manager does after a failed
			// deploy) succeeds and leaves nothing.
			owned, err := p.ListOwned(ctx)
			if err != nil {
				t.Fatalf("ListOwned after restore: %v", err)
			}
			got := map[string]int{}
			for _, o := range owned {
				got[o.InstanceID]++
			}
			if got[doomed.InstanceID] != 0 || got[next.InstanceID] != 1 {
				t.Errorf("ListOwned after restore: %v; want %s once and %s not at all", got, next.InstanceID, doomed.InstanceID)
			}
			if _, err := p.Status(ctx, provider.Ref{InstanceID: doomed.InstanceID}); !errors.Is(err, provider.ErrNotFound) {
				t.Errorf("status of the failed instance after restore: %v, want ErrNotFound", err)
			}
			if err := p.Terminate(ctx, provider.Ref{InstanceID: doomed.InstanceID}); err != nil {
				t.Errorf("terminate the failed instance: %v", err)
			}
			c, err := p.pool.get(ctx, cut)
			if err != nil {
				t.Fatalf("redial %s after restore: %v", cut, err)
			}
			if _, err := c.sftp.Stat(p.instancesDir(c) + "/" + doomed.InstanceID + "/" + "supervisor.pid"); err == nil {
				t.Errorf("the failed instance has a supervisor pid file on %s", cut)
			}
		})
	}
}

// TestIntegrationStatusWhileHostUnreachable: an instance on a host that
// cannot be reached is not known to be gone. Its status and its
// termination fail with ErrUnavailable, never ErrNotFound (which the
// manager reads as "gone" and would mark a live instance terminated), and
// with the host back it is found running.
func TestIntegrationStatusWhileHostUnreachable(t *testing.T) {
	env := testenv.Require(t, "ssh")
	if len(env.SSH.Hosts) < 3 {
		t.Fatalf("need three test hosts, have %v", env.SSH.Hosts)
	}
	hosts := []string{addrOf(env.SSH.Hosts[1]), addrOf(env.SSH.Hosts[2])}
	p := newTestProvider(t, testConfig(env, hosts...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Two instances: placement puts one on each host.
	refs := map[string]provider.Ref{}
	for range 2 {
		pkg := testPackage(t)
		req := provider.DeployRequest{InstanceID: providertest.NewInstanceID(), Remote: "homelab", Package: pkg, Env: pkg.Manifest.Env}
		h, err := p.Deploy(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		ref := provider.Ref{InstanceID: req.InstanceID, Remote: "homelab", Handle: h}
		t.Cleanup(func() { p.Terminate(context.Background(), ref) })
		hd, _ := decodeHandle(h)
		refs[hd.Host] = ref
		waitRunning(ctx, t, p, ref)
	}
	if len(refs) != 2 {
		t.Fatalf("two instances went to %d host(s), want one each", len(refs))
	}
	cut := hosts[1]
	onCut, onOther := refs[cut], refs[hosts[0]]
	restore := cutHost(t, cut, "reset")

	// With its handle, without it (a lost handle makes find search every
	// host), and for an id no host has: none may read as not found.
	for name, ref := range map[string]provider.Ref{
		"handle":    onCut,
		"no handle": {InstanceID: onCut.InstanceID, Remote: "homelab"},
		"unknown":   {InstanceID: providertest.NewInstanceID(), Remote: "homelab"},
	} {
		_, err := p.Status(ctx, ref)
		if !errors.Is(err, provider.ErrUnavailable) || errors.Is(err, provider.ErrNotFound) {
			t.Errorf("status (%s) with %s cut: %v; want ErrUnavailable and not ErrNotFound", name, cut, err)
		}
	}
	if err := p.Terminate(ctx, provider.Ref{InstanceID: onCut.InstanceID, Remote: "homelab"}); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("terminate with %s cut: %v; want ErrUnavailable (it may run there)", cut, err)
	}
	// The reachable host's instance is unaffected.
	if st, err := p.Status(ctx, provider.Ref{InstanceID: onOther.InstanceID, Remote: "homelab"}); err != nil || st.State != provider.StateRunning {
		t.Errorf("status of the instance on %s: %+v %v; want running", hosts[0], st, err)
	}

	restore()
	if st, err := p.Status(ctx, onCut); err != nil || st.State != provider.StateRunning {
		t.Errorf("status after %s is back: %+v %v; want running", cut, st, err)
	}
	if _, err := p.Status(ctx, provider.Ref{InstanceID: providertest.NewInstanceID(), Remote: "homelab"}); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("status of an unknown instance with every host reachable: %v; want ErrNotFound", err)
	}
}
