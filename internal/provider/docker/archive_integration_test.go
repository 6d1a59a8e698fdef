package docker

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/ociimage"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/providertest"
	"github.com/bpm-project/bpm/internal/testenv"
)

// TestIntegrationPackageArchive: an image the engine lacks and cannot pull
// is loaded from the archive the package's container source names
// (relative to the package), and the instance runs from it.
func TestIntegrationPackageArchive(t *testing.T) {
	env := testenv.Require(t, "docker")
	c := NewConfig()
	c.Endpoint = env.Docker.Host
	p := newTestProvider(t, "conf-archive", c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A tag no engine has: the test image's server, packed afresh.
	ref := "bpm-test/archive:" + providertest.NewInstanceID()
	dir := t.TempDir()
	bin := filepath.Join(dir, "server")
	build := exec.Command("go", "build", "-o", bin, "github.com/bpm-project/bpm/internal/testenv/testimage")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the test server: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "image.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ociimage.Write(f, ociimage.Image{RefName: ref, Files: []ociimage.File{{Name: "server", Mode: 0o755, Data: data}}, Entrypoint: []string{"/server"}}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p.cli.call(cctx, http.MethodDelete, "/images/"+ref, nil, nil, nil)
	})
	if ok, err := p.cli.imageExists(ctx, ref); err != nil || ok {
		t.Fatalf("image %s on the engine before the test: %v, %v", ref, ok, err)
	}

	pkg := providertest.ContainerPackage(ref)(t)
	pkg.Dir = dir
	pkg.Manifest.Sources = []blueprint.Source{{Kind: blueprint.SourceContainer, Image: ref, Archive: "image.tar"}}
	id := providertest.NewInstanceID()
	if _, err := p.Deploy(ctx, provider.DeployRequest{InstanceID: id, Remote: "conf-archive", Package: pkg}); err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	if ok, err := p.cli.imageExists(ctx, ref); err != nil || !ok {
		t.Fatalf("image %s not on the engine after the deploy: %v, %v", ref, ok, err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		st, err := p.Status(ctx, provider.Ref{InstanceID: id, Remote: "conf-archive"})
		if err == nil && st.State == provider.StateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance from the package's archive: %+v, %v", st, err)
		}
	}
	if err := p.Terminate(ctx, provider.Ref{InstanceID: id, Remote: "conf-archive"}); err != nil {
		t.Fatal(err)
	}
}
