package ssh

import (
	"context"
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
	cfg := NewConfig()
	cfg.Hosts = []string{"h"}
	// The docker runtime (the default) labels containers with the
	// remote's name, which the registry passes in.
	p, err := info.New(context.Background(), provider.Env{Remote: "x", Config: cfg})
	if err != nil || p.(*Provider).opts.Remote != "x" {
		t.Errorf("New docker runtime: %v, %v", p, err)
	}
	if _, err := New(cfg, Options{}); err == nil {
		t.Error("docker runtime without a remote name accepted")
	}
	cfg.Runtime.Type = RuntimeNative
	p, err = info.New(context.Background(), provider.Env{Remote: "x", Config: cfg})
	if err != nil || p.Type() != Type {
		t.Errorf("New native runtime: %v, %v", p, err)
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
		{"no hosts", func(c *Config) {}, []string{"hosts"}},
		{"spec homelab", func(c *Config) {
			c.Hosts = []string{"192.168.1.10", "192.168.1.11"}
			c.User = "blueprint"
			c.Key = "/home/op/.ssh/blueprint_deploy"
			c.Runtime.DockerSocket = "unix:///var/run/docker.sock"
		}, nil},
		{"host forms", func(c *Config) { c.Hosts = []string{"h", "h2:2222", "[::1]:22", "::2", "10.0.0.1"} }, nil},
		{"same host by default port", func(c *Config) { c.Hosts = []string{"h", "h:22"} }, []string{"hosts[1]"}},
		{"ipv6 with port needs brackets", func(c *Config) { c.Hosts = []string{"fe80::1:22x"} }, []string{"hosts[0]"}},
		{"native", func(c *Config) { c.Hosts = []string{"h"}; c.Runtime = Runtime{Type: RuntimeNative} }, nil},
		{"empty runtime type", func(c *Config) { c.Hosts = []string{"h"}; c.Runtime.Type = "" }, []string{"runtime.type"}},
		{"socket not unix", func(c *Config) { c.Hosts = []string{"h"}; c.Runtime.DockerSocket = "tcp://h:2375" }, []string{"runtime.docker_socket"}},
		{"passphrase without key", func(c *Config) { c.Hosts = []string{"h"}; c.KeyPassphrase = "p" }, []string{"key_passphrase"}},
		{"tunnel key", func(c *Config) { c.Hosts = []string{"h"}; c.Tunnel.PrivateKey = "short" }, []string{"tunnel.private_key", "tunnel.private_key"}},
		// Well formed, but one key cannot serve a gateway per host.
		{"tunnel key per host", func(c *Config) {
			c.Hosts = []string{"h"}
			c.Tunnel.PrivateKey = "YNqHbfBQKaGvzefgDsdl1OX3oaeABZuOj1ahWJSRcUk="
		}, []string{"tunnel.private_key"}},
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
