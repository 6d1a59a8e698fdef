package docker

import (
	"context"
	"strings"
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
	p, err := info.New(context.Background(), provider.Env{Remote: "x", Config: info.NewConfig()})
	if err != nil || p.Type() != Type {
		t.Errorf("New: %v, %v", p, err)
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
		{"defaults (local socket)", func(c *Config) {}, nil},
		{"unix socket", func(c *Config) { c.Endpoint = "unix:///run/docker.sock" }, nil},
		{"tcp with ca", func(c *Config) { c.Endpoint = "tcp://h:2376"; c.CA = "/ca.pem" }, nil},
		{"tcp with client cert", func(c *Config) { c.Endpoint = "tcp://h:2376"; c.Cert = "/c"; c.Key = "/k" }, nil},
		{"tcp insecure", func(c *Config) { c.Endpoint = "tcp://h:2375"; c.Insecure = true }, nil},
		{"ssh", func(c *Config) { c.Endpoint = "ssh://deploy@h" }, nil},
		{"password in url", func(c *Config) { c.Endpoint = "https://alice:s3cret@h:2376"; c.CA = "/ca.pem" }, []string{"endpoint"}},
		{"one key for regions", func(c *Config) {
			c.Regions = Regions{Primary: "a", Replicas: []string{"b"}}
			c.Tunnel.PrivateKey = "YNqHbfBQKaGvzefgDsdl1OX3oaeABZuOj1ahWJSRcUk="
		}, []string{"tunnel.private_key"}},
		{"https with token", func(c *Config) { c.Endpoint = "https://api.fly.io"; c.AuthToken = "t" }, nil},
		{"tcp without tls", func(c *Config) { c.Endpoint = "tcp://h:2375" }, []string{"endpoint"}},
		{"tcp bad port", func(c *Config) { c.Endpoint = "tcp://h:0"; c.CA = "/ca" }, []string{"endpoint"}},
		{"token over plain tcp", func(c *Config) { c.Endpoint = "tcp://h:2375"; c.Insecure = true; c.AuthToken = "t" }, []string{"auth_token"}},
		{"tls files on unix", func(c *Config) { c.Endpoint = "unix:///s"; c.CA = "/ca" }, []string{"endpoint"}},
		{"key without cert", func(c *Config) { c.Endpoint = "tcp://h:2376"; c.CA = "/ca"; c.Key = "/k" }, []string{"cert"}},
		{"unknown scheme", func(c *Config) { c.Endpoint = "npipe:////./pipe/docker_engine" }, []string{"endpoint"}},
		{"regions", func(c *Config) {
			c.Regions = Regions{Primary: "sea", Replicas: []string{"lax", "ewr"}, Endpoints: map[string]string{"lax": "https://lax.example"}}
		}, nil},
		{"replica equals primary", func(c *Config) { c.Regions = Regions{Primary: "sea", Replicas: []string{"sea"}} }, []string{"regions.replicas[0]"}},
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

func TestEndpointRedactedInMessages(t *testing.T) {
	e := endpoint{URL: "tcp://alice:s3cret@h:2376", Context: "edge"}
	if got := e.where(); strings.Contains(got, "s3cret") || !strings.Contains(got, "h:2376") {
		t.Errorf("where() = %q: want the host without the password", got)
	}
}
