package testenv_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/testenv"
)

// kubeEnv is what `scripts/testenv env` exports for the Kubernetes component.
type kubeEnv struct {
	kubeconfig, kubectl, image, nodeAddr, hubAddr string
	contexts                                      [2]struct{ name, namespace string }
}

// requireKubernetes: testenv.Require skips locally (with how to start the
// cluster) or fails under CI=true when the cluster is not up; the other
// variables come with BPM_TEST_KUBECONFIG, so one missing is a broken env.
func requireKubernetes(t *testing.T) kubeEnv {
	t.Helper()
	env := testenv.Require(t, "kubernetes")
	v := func(name string) string {
		t.Helper()
		s := env.Var(name)
		if s == "" {
			t.Fatalf("%s is unset although BPM_TEST_KUBECONFIG is set: re-run `scripts/testenv up kubernetes`", name)
		}
		return s
	}
	e := kubeEnv{kubeconfig: env.Kubernetes.Kubeconfig, kubectl: v("BPM_TEST_KUBECTL"), image: v("BPM_TEST_K8S_IMAGE"),
		nodeAddr: v("BPM_TEST_K8S_NODE_ADDR"), hubAddr: v("BPM_TEST_K8S_HUB_ADDR")}
	e.contexts[0].name, e.contexts[0].namespace = v("BPM_TEST_K8S_CONTEXT_A"), v("BPM_TEST_K8S_NAMESPACE_A")
	e.contexts[1].name, e.contexts[1].namespace = v("BPM_TEST_K8S_CONTEXT_B"), v("BPM_TEST_K8S_NAMESPACE_B")
	return e
}

// kubectl runs the built kubectl in one context; stdin may be nil.
func kubectl(t *testing.T, e kubeEnv, kctx string, stdin []byte, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.kubectl, append([]string{"--kubeconfig", e.kubeconfig, "--context", kctx}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func mustKubectl(t *testing.T, e kubeEnv, kctx string, stdin []byte, args ...string) string {
	t.Helper()
	out, err := kubectl(t, e, kctx, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// getEventually GETs url until the body contains want (kube-proxy programs
// Service rules asynchronously) or the deadline passes.
func getEventually(t *testing.T, url, want string) string {
	t.Helper()
	// A fresh connection per try: a kept-alive one opened before kube-proxy
	// programmed the Service would never be NATed to the pod.
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%s: %s", resp.Status, body)
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), want) {
				return string(body)
			}
		} else {
			last = err.Error()
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("GET %s: want %q in the answer; last: %s", url, want, last)
	return ""
}

const smokeManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME, labels: {app: NAME}}
spec:
  replicas: 1
  selector: {matchLabels: {app: NAME}}
  template:
    metadata: {labels: {app: NAME}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: IMAGE
        imagePullPolicy: Never
        env: [{name: MESSAGE, value: MESSAGE_VALUE}]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: NAME, labels: {app: NAME}}
spec:
  type: ClusterIP
  selector: {app: NAME}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: NAME-np, labels: {app: NAME}}
spec:
  type: NodePort
  selector: {app: NAME}
  ports: [{port: 80, targetPort: 8080}]
`

// TestKubernetesSmoke proves the cluster serves real pods in both contexts:
// each context is its own user and namespace, runs a Deployment of the
// locally built (imported, never pulled) image, and the host reaches it
// through a ClusterIP and a NodePort Service; the pod reaches the hub address
// over UDP.
func TestKubernetesSmoke(t *testing.T) {
	e := requireKubernetes(t)

	// A UDP echo on the hub address stands in for bpm's hub.
	hub, err := net.ListenPacket("udp", net.JoinHostPort(e.hubAddr, "0"))
	if err != nil {
		t.Fatalf("listen on the hub address %s: %v", e.hubAddr, err)
	}
	t.Cleanup(func() { hub.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := hub.ReadFrom(buf)
			if err != nil {
				return
			}
			hub.WriteTo(append([]byte("pong:"), buf[:n]...), from)
		}
	}()

	for _, c := range e.contexts {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			wantUser := map[string]string{"bpm-test-a": "bpm-test-a", "bpm-test-b": "bpm-test-b"}[c.name]
			if who := mustKubectl(t, e, c.name, nil, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); wantUser != "" && who != wantUser {
				t.Errorf("context %s authenticates as %q, want %q", c.name, who, wantUser)
			}

			b := make([]byte, 4)
			rand.Read(b)
			name := "bpm-smoke-" + hex.EncodeToString(b)
			msg := c.name + "-" + hex.EncodeToString(b)
			manifest := strings.NewReplacer("MESSAGE_VALUE", msg, "NAME", name, "IMAGE", e.image).Replace(smokeManifest)
			// No -n: the context's own namespace must be used.
			mustKubectl(t, e, c.name, []byte(manifest), "apply", "-f", "-")
			t.Cleanup(func() {
				if out, err := kubectl(t, e, c.name, []byte(manifest), "delete", "--ignore-not-found", "--wait=true", "--timeout=90s", "-f", "-"); err != nil {
					t.Errorf("cleanup: %v %s", err, out)
				}
			})
			ns := "-n=" + c.namespace
			if out, err := kubectl(t, e, c.name, nil, ns, "rollout", "status", "deployment/"+name, "--timeout=120s"); err != nil {
				pods, _ := kubectl(t, e, c.name, nil, ns, "describe", "pods", "-l", "app="+name)
				t.Fatalf("%v\n%s\n%s", err, out, pods)
			}

			clusterIP := mustKubectl(t, e, c.name, nil, ns, "get", "service", name, "-o", "jsonpath={.spec.clusterIP}")
			nodePort := mustKubectl(t, e, c.name, nil, ns, "get", "service", name+"-np", "-o", "jsonpath={.spec.ports[0].nodePort}")
			want := "bpm-test-image ok message=" + msg
			getEventually(t, "http://"+net.JoinHostPort(clusterIP, "80")+"/", want)
			getEventually(t, "http://"+net.JoinHostPort(e.nodeAddr, nodePort)+"/", want)

			// Pod -> hub: the pod sends a datagram to the hub address and returns the reply.
			hubPort := hub.LocalAddr().(*net.UDPAddr).Port
			getEventually(t, fmt.Sprintf("http://%s/udp?addr=%s&msg=%s", net.JoinHostPort(clusterIP, "80"),
				net.JoinHostPort(e.hubAddr, fmt.Sprint(hubPort)), msg), "pong:"+msg)
		})
	}
}
