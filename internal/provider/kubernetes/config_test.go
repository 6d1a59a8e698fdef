package kubernetes

import (
	"context"
	"errors"
	"testing"

	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/provider"
)

func TestInfo(t *testing.T) {
	info := Info()
	if info.Type != Type || !info.Remote || info.Description == "" {
		t.Errorf("Info = %+v", info)
	}
	if _, ok := info.NewConfig().(*Config); !ok {
		t.Errorf("NewConfig returns %T, want *Config", info.NewConfig())
	}
	// A config of another type is a wiring bug, reported, not a panic.
	if _, err := info.New(context.Background(), provider.Env{Remote: "x", Config: struct{}{}}); err == nil {
		t.Error("New with a foreign config: no error")
	}
	// A kubeconfig that does not exist fails before any request.
	c := NewConfig()
	c.Kubeconfig = t.TempDir() + "/missing"
	if _, err := info.New(context.Background(), provider.Env{Remote: "x", Config: c}); err == nil || errors.Is(err, provider.ErrNotAvailableYet) {
		t.Errorf("New with a missing kubeconfig: err = %v", err)
	}
}

// fields lists the Field of every problem Validate reports.
func fields(err error) []string {
	var out []string
	for _, f := range config.FlattenFieldErrors(err) {
		out = append(out, f.Field)
	}
	return out
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want []string
	}{
		{"defaults", func(c *Config) {}, nil},
		{"full", func(c *Config) {
			c.Namespace = "blueprint-production"
			c.GatewayImage = "registry.example.com:5000/bpm/gateway@sha256:abc"
			c.GatewayPullPolicy = "Never"
			c.ImagePullSecrets = []string{"regcred", "reg.cred"}
			c.NodeSelector = map[string]string{"kubernetes.io/arch": "amd64", "gpu": ""}
			c.Resources = config.Resources{CPULimit: "250m", MemoryLimit: "1.5Gi", MaxInstances: 3}
		}, nil},
		{"pull policy", func(c *Config) { c.GatewayPullPolicy = "never" }, []string{"gateway_pull_policy"}},
		{"runtime class", func(c *Config) { c.RuntimeClass = "kata-qemu.v2" }, nil},
		{"bad runtime class", func(c *Config) { c.RuntimeClass = "Kata" }, []string{"runtime_class"}},
		{"empty namespace", func(c *Config) { c.Namespace = "" }, []string{"namespace"}},
		{"long namespace", func(c *Config) { c.Namespace = string(make([]byte, 64)) }, []string{"namespace"}},
		{"memory not a quantity", func(c *Config) { c.Resources.MemoryLimit = "8 GiB" }, []string{"resources.memory_limit"}},
		{"memory without suffix", func(c *Config) { c.Resources.MemoryLimit = "512" }, []string{"resources.memory_limit"}},
		{"zero cpu", func(c *Config) { c.Resources.CPULimit = "0" }, []string{"resources.cpu_limit"}},
		{"bad selector", func(c *Config) { c.NodeSelector = map[string]string{"a": "x y", "-b": "v"} }, []string{"node_selector", "node_selector"}},
		{"everything", func(c *Config) {
			c.Namespace = "A"
			c.GatewayImage = "img with space"
			c.Tunnel.Endpoint = "hub"
		}, []string{"namespace", "gateway_image", "tunnel.endpoint"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConfig()
			tc.mod(c)
			got := fields(c.Validate())
			if len(got) != len(tc.want) {
				t.Fatalf("problems %v, want %v (%v)", got, tc.want, c.Validate())
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("problems %v, want %v", got, tc.want)
				}
			}
		})
	}
}
