package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/ociimage"
)

func TestPackageImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/echo")
	}
	out := filepath.Join(t.TempDir(), "echo.tar")
	_, stderr, err := runSub(t, &globals{}, newPackageCommand, "package", "image", "../../examples/echo", "-o", out)
	if err != nil {
		t.Fatalf("package image: %v\n%s", err, stderr)
	}
	f, err := os.Open(out)
	must(t, err)
	defer f.Close()
	img, err := ociimage.Read(f, 1<<30)
	must(t, err)
	if len(img.Files) != 1 || img.Files[0].Name != "echo" || img.Files[0].Mode&0o111 == 0 {
		t.Fatalf("layer = %+v, want one executable echo", img.Files)
	}
	if len(img.Entrypoint) != 1 || img.Entrypoint[0] != "/echo" || img.Arch != runtime.GOARCH || img.RefName != "bpm.local/echo:0.1.0" {
		t.Errorf("image = entrypoint %v arch %s name %q", img.Entrypoint, img.Arch, img.RefName)
	}
	if arch, err := ociimage.CheckStaticELF(bytes.NewReader(img.Files[0].Data)); err != nil || arch != runtime.GOARCH {
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
