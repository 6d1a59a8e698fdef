package docker

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
)

// TestDeployRefusesVMIsolation: a docker remote cannot give a VM per
// instance, so a manifest asking for one is refused, naming the field,
// before the engine is contacted at all.
func TestDeployRefusesVMIsolation(t *testing.T) {
	dial := func(context.Context) (net.Conn, error) {
		t.Error("the engine was contacted")
		return nil, errors.New("no engine in this test")
	}
	p, err := New("iso", NewConfig(), Options{Dial: dial, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	pkg := &blueprint.Package{Manifest: blueprint.Manifest{Name: "iso", Isolation: blueprint.IsolationVM,
		Sources: []blueprint.Source{{Kind: blueprint.SourceContainer, Image: "iso:1"}}}}
	_, err = p.Deploy(context.Background(), provider.DeployRequest{InstanceID: "bp-iso1", Package: pkg})
	if !errors.Is(err, provider.ErrUnsupported) || !strings.Contains(err.Error(), `isolation = "vm"`) {
		t.Fatalf("Deploy = %v, want ErrUnsupported naming isolation", err)
	}
}
