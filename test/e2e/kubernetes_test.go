//go:build !bpm_noremote

package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestIntegrationKubernetesEndToEnd is issue #8's end to end: with the
// gateway image (`bpm gateway image`) and echo's (`bpm package image`)
// imported into the cluster's containerd, `bpm deploy --remote <context>
// --package examples/echo` starts the gateway and the pod; echo registers
// through its bridge from the pod (the bpm-bridge sidecar and the
// gateway's relay port, checkBridge); a request with a token goes through
// the auth proxy and the tunnel to the pod; and `bpm terminate` removes
// every object bpm made for the instance, and with the last instance the
// gateway's, as the real kubectl sees it.
func TestIntegrationKubernetesEndToEnd(t *testing.T) {
	k := newK8sTarget(t)
	e := newEnv(t)
	pkg := filepath.Join(repoRoot(t), "examples", "echo")
	proxyPort, hubPort := freePort(t), freeUDPPort(t)
	const remote = "e2e-k8s"
	k.use(e, remote, proxyPort, hubPort)
	e.startManager()

	var inst instance
	out := e.mustRun("deploy", "--remote", remote, "--package", pkg, "-o", "json")
	must(t, json.Unmarshal([]byte(out), &inst))
	e.waitState(inst.ID, "running")
	if objs := k.instanceObjects(t, inst.ID); !strings.Contains(strings.Join(objs, " "), "Pod/") {
		t.Fatalf("kubectl sees no pod for %s: %v", inst.ID, objs)
	}

	proxy := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	tok := e.tokenFor(proxy, inst.ServiceID)
	body := waitProxied(t, proxy+"/from-the-hub", tok)
	if !strings.Contains(body, `"path": "/from-the-hub"`) || !strings.Contains(body, `"SERVICE_ID": "`+fmt.Sprint(inst.ServiceID)+`"`) {
		t.Fatalf("through the proxy: %s", body)
	}
	if strings.Contains(e.managerLog(), "must-not-leak") {
		t.Error("the manager logged an environment value")
	}
	k.checkBridge(t, e, inst.ID, remote)

	e.mustRun("terminate", inst.ID)
	var left []string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if left = k.instanceObjects(t, inst.ID); len(left) == 0 {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("objects of %s left after terminate: %v", inst.ID, left)
	}
	// The remote's last instance took the gateway, its relay Service and
	// NetworkPolicy with it.
	var gw string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if gw, _ = k.kubectl("get", "deployment,service,networkpolicy,secret", "-n", k.ns, "-l", "bpm.component=gateway", "-o", "name"); gw == "" {
			break
		}
	}
	if gw != "" {
		t.Errorf("gateway objects left after the last instance's terminate: %s", gw)
	}
	if code, _ := proxied(t, proxy+"/after", tok); code == 200 {
		t.Error("the proxy still routes to a terminated instance")
	}
}
