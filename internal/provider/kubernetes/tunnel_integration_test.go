package kubernetes_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/kubernetes"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// gatewayImage builds a static bpm, writes its gateway image archive and
// imports it into the cluster's containerd, returning the reference.
func gatewayImage(t *testing.T, e kubeEnv) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bpm")
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", bin, "./cmd/bpm")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/bpm: %v\n%s", err, out)
	}
	b := make([]byte, 4)
	rand.Read(b)
	ref := "localhost/bpm-test/gateway:t" + hex.EncodeToString(b)
	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	archive := filepath.Join(dir, "gateway.tar")
	out, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.WriteImage(out, f, gateway.ImageOptions{RefName: ref}); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command(e.env.Var("BPM_TEST_K8S_IMPORT"), archive).CombinedOutput(); err != nil {
		t.Fatalf("import %s: %v\n%s", archive, err, msg)
	}
	return ref
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestIntegrationTunnel: EstablishTunnel runs the real gateway image in
// the cluster from the TunnelSpec alone; it dials a hub on this host, and
// the hub reaches an instance's ClusterIP through it. A second call is a
// no-op that still reports the tunnel.
func TestIntegrationTunnel(t *testing.T) {
	e := requireKubernetes(t)
	hubAddr := e.env.Var("BPM_TEST_K8S_HUB_ADDR")
	ref := gatewayImage(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	hubKey, err := tunnel.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	gwKey, err := tunnel.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	port := freeUDPPort(t)
	hubTun, gwTun := netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")
	hub, err := tunnel.NewHub(ctx, tunnel.HubConfig{PrivateKey: hubKey, Address: hubTun,
		ListenAddr: ":" + strconv.Itoa(port), Endpoint: net.JoinHostPort(hubAddr, strconv.Itoa(port))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	const remote = "k8s-tun"
	if err := hub.SetPeers([]tunnel.Peer{{Name: remote, PublicKey: gwKey.Public(), Address: gwTun}}); err != nil {
		t.Fatal(err)
	}

	cfg := e.config(0)
	cfg.GatewayImage = ref
	cfg.GatewayPullPolicy = "Never"
	p := newProvider(t, remote, cfg)
	t.Cleanup(func() {
		// The provider interface has no "remove the remote"; the gateway is
		// found by its labels, as an operator would.
		e.kubectlOut(t, e.contexts[0].name, "-n", e.contexts[0].namespace, "delete", "deployment,secret",
			"-l", "bpm.component=gateway,bpm.remote="+remote, "--wait=true", "--timeout=60s")
	})
	spec := provider.TunnelSpec{Remote: remote, HubEndpoint: hub.Endpoint(), HubPublicKey: hub.PublicKey().String(),
		HubAddress: hubTun.String(), GatewayAddress: gwTun.String() + "/16", GatewayPrivateKey: gwKey.Reveal()}
	info, err := p.EstablishTunnel(ctx, spec)
	if err != nil {
		t.Fatalf("EstablishTunnel: %v", err)
	}
	if info.GatewayAddress != spec.GatewayAddress {
		t.Errorf("TunnelInfo = %+v", info)
	}
	// The key is in the Secret only.
	if dep := e.kubectlOut(t, e.contexts[0].name, "-n", e.contexts[0].namespace, "get", "deployment", "bpm-gateway-"+remote, "-o", "json"); strings.Contains(dep, gwKey.Reveal()) {
		t.Error("the gateway's private key is in its Deployment")
	}
	if _, err := p.EstablishTunnel(ctx, spec); err != nil {
		t.Fatalf("second EstablishTunnel: %v", err)
	}

	id := "bp-t" + hex.EncodeToString([]byte(remote))[:8]
	pkg := probePackage(e.image)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := p.Terminate(cctx, provider.Ref{InstanceID: id, Remote: remote}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	deployAndGet := func() {
		t.Helper()
		if _, err := p.Deploy(ctx, provider.DeployRequest{InstanceID: id, Remote: remote, Package: pkg,
			Env: map[string]string{"MESSAGE": "through-the-tunnel"}}); err != nil {
			t.Fatal(err)
		}
		var st provider.Status
		for st.State != provider.StateRunning {
			if st, err = p.Status(ctx, provider.Ref{InstanceID: id, Remote: remote}); err != nil || st.State == provider.StateFailed {
				t.Fatalf("status %+v %v", st, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: hub.Via(remote).DialContext, DisableKeepAlives: true}}
		var last string
		for {
			resp, err := client.Get("http://" + st.Address + "/")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if strings.Contains(string(body), "message=through-the-tunnel") {
					return
				}
				last = string(body)
			} else {
				last = err.Error()
			}
			if ctx.Err() != nil {
				t.Fatalf("GET %s through the tunnel: %s", st.Address, last)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	deployAndGet()

	// The remote's last instance takes the gateway with it: kubectl finds
	// nothing of the remote's in the namespace. What stays is the
	// namespace itself, which may hold other things and may not be bpm's
	// to delete, and the ResourceQuota (none here: no max_instances),
	// which New applied from [resources] and the next deploy needs.
	terminate := func() {
		t.Helper()
		if err := p.Terminate(ctx, provider.Ref{InstanceID: id, Remote: remote}); err != nil {
			t.Fatalf("Terminate: %v", err)
		}
		if left := remoteObjects(t, e, 0, remote); left != "" {
			t.Errorf("left in namespace %s after the last terminate:\n%s", e.contexts[0].namespace, left)
		}
	}
	terminate()
	if got := e.kubectlOut(t, e.contexts[0].name, "get", "namespace", e.contexts[0].namespace, "-o", "name"); got != "namespace/"+e.contexts[0].namespace {
		t.Errorf("namespace: %q", got)
	}

	// A deploy whose gateway went after its EstablishTunnel (as when the
	// last instance's terminate runs between the manager's
	// EstablishTunnel and Deploy) brings the gateway back, and the
	// instance answers through the tunnel again.
	deployAndGet()
	terminate()
}

// remoteObjects lists, as kubectl sees them, the objects labelled with
// the remote in context i's namespace, of every kind bpm creates there and
// those the cluster makes from them (ReplicaSets, pods).
func remoteObjects(t *testing.T, e kubeEnv, i int, remote string) string {
	t.Helper()
	c := e.contexts[i]
	return e.kubectlOut(t, c.name, "-n", c.namespace, "get",
		"deployments,statefulsets,replicasets,pods,services,secrets,networkpolicies,persistentvolumeclaims,configmaps,resourcequotas",
		"-l", kubernetes.LabelRemote+"="+remote, "-o", "name")
}
