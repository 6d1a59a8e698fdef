package kubernetes_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/bpm-project/bpm/internal/provider/kubernetes"
)

// TestIntegrationExecCredentialPlugin: a kubeconfig user that authenticates
// through an exec credential plugin — how EKS (aws eks get-token), GKE
// (gke-gcloud-auth-plugin) and AKS (kubelogin) log in — works as in
// kubectl: bpm runs the plugin and uses the token it prints. A plugin that
// fails is reported, naming it.
func TestIntegrationExecCredentialPlugin(t *testing.T) {
	e := requireKubernetes(t)
	kc, err := clientcmd.LoadFromFile(e.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// Context b logs in with a static token; the plugin hands out the same.
	ctxB := kc.Contexts[e.contexts[1].name]
	if ctxB == nil || kc.AuthInfos[ctxB.AuthInfo] == nil || kc.AuthInfos[ctxB.AuthInfo].Token == "" {
		t.Fatalf("context %s has no token user to hand out", e.contexts[1].name)
	}
	token := kc.AuthInfos[ctxB.AuthInfo].Token
	dir := t.TempDir()
	marker := filepath.Join(dir, "plugin-ran")
	plugin := filepath.Join(dir, "get-token")
	script := "#!/bin/sh\n: > '" + marker + "'\n" +
		`printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' '` + token + "'\n"
	if err := os.WriteFile(plugin, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	failing := filepath.Join(dir, "expired")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\necho 'the SSO session has expired' >&2\nexit 1\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, cmd := range map[string]string{"exec-ok": plugin, "exec-expired": failing} {
		kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
			APIVersion: "client.authentication.k8s.io/v1", Command: cmd, InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
		}}
		c := *ctxB
		c.AuthInfo = name
		kc.Contexts[name] = &c
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}

	cfg := kubernetes.NewConfig()
	cfg.Kubeconfig, cfg.Context, cfg.Namespace = path, "exec-ok", e.contexts[1].namespace
	p := newProvider(t, "exec-plugin", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.Resources(ctx); err != nil {
		t.Fatalf("Resources with the plugin's token: %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the exec credential plugin never ran: bpm did not authenticate through it")
	}

	cfg.Context = "exec-expired"
	if _, err := kubernetes.New(ctx, "exec-expired", cfg, nil); err == nil || !strings.Contains(err.Error(), failing) {
		t.Errorf("a failing plugin: %v, want an error naming it", err)
	}
}
