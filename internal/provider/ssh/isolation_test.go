package ssh

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
)

// TestDeployRefusesVMIsolation: neither runtime gives a VM per instance,
// so a manifest asking for one is refused, naming the field, before any
// host is dialled (the host here does not exist).
func TestDeployRefusesVMIsolation(t *testing.T) {
	for _, rt := range []string{RuntimeNative, RuntimeDocker} {
		t.Run(rt, func(t *testing.T) {
			cfg := NewConfig()
			cfg.Hosts = []string{"192.0.2.1"}
			cfg.Runtime.Type = rt
			p, err := New(cfg, Options{Remote: "iso"})
			if err != nil {
				t.Fatal(err)
			}
			pkg := &blueprint.Package{Manifest: blueprint.Manifest{Name: "iso", Isolation: blueprint.IsolationVM,
				Sources: []blueprint.Source{{Kind: blueprint.SourceContainer, Image: "iso:1"}}}}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // a dial would fail on this rather than wait
			_, err = p.Deploy(ctx, provider.DeployRequest{InstanceID: "bp-iso1", Package: pkg})
			if !errors.Is(err, provider.ErrUnsupported) || !strings.Contains(err.Error(), `isolation = "vm"`) {
				t.Fatalf("Deploy = %v, want ErrUnsupported naming isolation", err)
			}
		})
	}
}
