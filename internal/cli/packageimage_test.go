package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/ociimage"
)

// layerFile returns the config and the one file of an image archive's
// layer (ociimage's own tests check the archive's structure).
func layerFile(t *testing.T, archive []byte) (ociimage.Config, *tar.Header, []byte) {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var idx ociimage.Index
	var man ociimage.Manifest
	var cfg ociimage.Config
	blob := func(d string) []byte { return files["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")] }
	must(t, json.Unmarshal(files["index.json"], &idx))
	must(t, json.Unmarshal(blob(idx.Manifests[0].Digest), &man))
	must(t, json.Unmarshal(blob(man.Config.Digest), &cfg))
	if got := idx.Manifests[0].Annotations[ociimage.RefNameAnnotation]; got != "bpm.local/echo:0.1.0" {
		t.Errorf("image name = %q, want the container source's", got)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(man.Layers[0].Digest)))
	must(t, err)
	lr := tar.NewReader(zr)
	h, err := lr.Next()
	must(t, err)
	b, _ := io.ReadAll(lr)
	return cfg, h, b
}

func TestPackageImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/echo")
	}
	out := filepath.Join(t.TempDir(), "echo.tar")
	_, stderr, err := runSub(t, &globals{}, newPackageCommand, "package", "image", "../../examples/echo", "-o", out)
	if err != nil {
		t.Fatalf("package image: %v\n%s", err, stderr)
	}
	archive, err := os.ReadFile(out)
	must(t, err)
	cfg, h, bin := layerFile(t, archive)
	if h.Name != "echo" || h.Mode&0o111 == 0 {
		t.Errorf("layer file = %s mode %o, want executable echo", h.Name, h.Mode)
	}
	if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/echo" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("config = %+v", cfg)
	}
	if arch, err := ociimage.CheckStaticELF(bytes.NewReader(bin)); err != nil || arch != runtime.GOARCH {
		t.Errorf("the packed binary: %q, %v; want a static %s executable", arch, err, runtime.GOARCH)
	}
}

func TestPackageImageRefusals(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.tar")
	// A package with no container source and no --tag.
	pkg := filepath.Join(dir, "p")
	must(t, os.MkdirAll(pkg, 0o755))
	must(t, os.WriteFile(filepath.Join(pkg, "blueprint.toml"), []byte(`name = "p"
version = "1.0.0"
[[sources]]
kind = "native"
[[sources.binaries]]
os = "linux"
arch = "amd64"
path = "/bin/sh"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
`), 0o644))
	_, _, err := runSub(t, &globals{}, newPackageCommand, "package", "image", pkg, "-o", out)
	if ExitCode(err) != ExitInvalid || !strings.Contains(err.Error(), "--tag") {
		t.Errorf("no container source: exit %d, %v; want 6 naming --tag", ExitCode(err), err)
	}
	_, _, err = runSub(t, &globals{}, newPackageCommand, "package", "image", pkg)
	if ExitCode(err) != ExitUsage {
		t.Errorf("no -o: exit %d, %v; want 2", ExitCode(err), err)
	}
	// A native binary whose hash does not match is never packed.
	_, _, err = runSub(t, &globals{}, newPackageCommand, "package", "image", pkg, "-o", out, "--tag", "p:1", "--arch", "amd64")
	if err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("wrong sha256: %v, want a refusal naming sha256", err)
	}
	if _, serr := os.Stat(out); serr == nil {
		t.Error("a refused image left a file behind")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
