package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/providertest"
	"github.com/bpm-project/bpm/internal/testenv"
)

// regionsConfig is a remote with region "a" on the plain engine (the
// remote's endpoint) and region "b" on the TLS engine.
func regionsConfig(env *testenv.Env) *Config {
	c := NewConfig()
	c.Endpoint = env.Docker.Host
	c.Regions = Regions{Primary: "a", Replicas: []string{"b"}, Endpoints: map[string]string{"b": env.Docker.TLSHost}}
	// One set of TLS files for the remote: the plain engine ignores them
	// (a unix endpoint), the TLS one verifies them.
	c.CA, c.Cert, c.Key = env.Docker.TLSCA, env.Docker.TLSCert, env.Docker.TLSKey
	return c
}

func newRegional(t *testing.T, remote string, c *Config) *regional {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r, err := newRegionalProvider(remote, c, Options{Getenv: noEnv, Progress: &bytes.Buffer{}, Logger: testLogger(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	clean := func() {
		for _, p := range r.regions {
			cleanupRemote(t, p)
		}
	}
	clean()
	t.Cleanup(clean)
	return r
}

// TestIntegrationRegions: a remote over two engines, one per region. The
// conformance suite passes on it (deploys go to the primary); an instance
// placed in the replica runs on that engine; status, list and terminate
// find each instance in its own region, with or without its handle; and
// max_instances caps the remote over both regions.
func TestIntegrationRegions(t *testing.T) {
	env := testenv.Require(t, "docker")
	t.Run("conformance", func(t *testing.T) {
		r := newRegional(t, "conf-regions", regionsConfig(env))
		providertest.Run(t, providertest.Harness{
			Provider: r, Remote: "conf-regions", Package: providertest.ContainerPackage(env.Docker.Image), LogMarker: logMarker, Timeout: time.Minute,
		})
	})
	t.Run("placement", func(t *testing.T) {
		c := regionsConfig(env)
		c.MaxInstances = 2
		r := newRegional(t, "regions", c)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if got := r.Regions(); len(got) != 2 || got[0] != "a" || got[1] != "b" {
			t.Fatalf("Regions = %v, want [a b]", got)
		}
		pkg := providertest.ContainerPackage(env.Docker.Image)(t)
		deploy := func(region string) provider.Ref {
			req := provider.DeployRequest{InstanceID: providertest.NewInstanceID(), Remote: "regions", Package: pkg, Region: region}
			site, err := r.Place(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			req.Site = site
			h, err := r.Deploy(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			return provider.Ref{InstanceID: req.InstanceID, Remote: "regions", Handle: h}
		}
		inA, inB := deploy(""), deploy("b")
		for ref, want := range map[*provider.Ref]string{&inA: "a", &inB: "b"} {
			var h regionHandle
			if err := json.Unmarshal(ref.Handle, &h); err != nil || h.Region != want {
				t.Errorf("%s: handle %s, want region %s", ref.InstanceID, ref.Handle, want)
			}
			// The engine of that region holds it, the other does not.
			for name, p := range r.regions {
				if ok, err := p.Owns(ctx, ref.InstanceID); err != nil || ok != (name == want) {
					t.Errorf("%s: region %s owns it: %v, %v", ref.InstanceID, name, ok, err)
				}
			}
			// Found without the handle too (reconcile after a crash).
			if _, err := r.Status(ctx, provider.Ref{InstanceID: ref.InstanceID, Remote: "regions"}); err != nil {
				t.Errorf("%s: status without handle: %v", ref.InstanceID, err)
			}
		}
		owned, err := r.ListOwned(ctx)
		if err != nil || len(owned) != 2 {
			t.Fatalf("ListOwned = %+v, %v; want both instances", owned, err)
		}
		// The cap counts both regions: a third deploy, to either, is refused.
		req := provider.DeployRequest{InstanceID: providertest.NewInstanceID(), Remote: "regions", Package: pkg, Site: "b"}
		if _, err := r.Deploy(ctx, req); !errors.Is(err, provider.ErrQuota) {
			t.Errorf("third deploy over max_instances 2: %v, want ErrQuota", err)
		}
		if _, err := r.Place(ctx, provider.DeployRequest{Region: "nowhere"}); !errors.Is(err, provider.ErrNotFound) {
			t.Errorf("unknown region: %v, want ErrNotFound", err)
		}
		for _, ref := range []provider.Ref{inA, inB} {
			if err := r.Terminate(ctx, ref); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Status(ctx, ref); !errors.Is(err, provider.ErrNotFound) {
				t.Errorf("%s after terminate: %v, want ErrNotFound", ref.InstanceID, err)
			}
		}
	})
}
