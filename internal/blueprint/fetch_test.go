package blueprint

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// writePkg writes a manifest into dir and loads it, so fetch tests go
// through the same path as real packages.
func writePkg(t *testing.T, dir, manifest string) *Package {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	pkg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}

func nativeManifest(binary string) string {
	return fmt.Sprintf(`
name = "nat"
version = "0.1.0"
[[sources]]
kind = "native"
args = ["run"]
[[sources.binaries]]
os = %q
arch = %q
%s
`, runtime.GOOS, runtime.GOARCH, binary)
}

// cacheEntries lists the cache directory, so tests can see that nothing
// (not even a temp file) is left behind by a refused fetch.
func cacheEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestFetchNativePathVerifiesAndCaches(t *testing.T) {
	pkgDir, cache := t.TempDir(), t.TempDir()
	content := []byte("#!/bin/sh\necho hi\n")
	if err := os.WriteFile(filepath.Join(pkgDir, "bin"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	want := sum(content)
	pkg := writePkg(t, pkgDir, nativeManifest(fmt.Sprintf("path = \"bin\"\nsha256 = %q", want)))

	path, args, err := pkg.Executable(t.Context(), cache, runtime.GOOS, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(cache, want) {
		t.Errorf("path = %s, want content-addressed %s", path, filepath.Join(cache, want))
	}
	if len(args) != 1 || args[0] != "run" {
		t.Errorf("args = %v, want [run]", args)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("mode = %v, want 0755", fi.Mode().Perm())
	}
	if got, _ := os.ReadFile(path); string(got) != string(content) {
		t.Errorf("cached content = %q", got)
	}

	// With the source gone, a second run is served from the cache.
	if err := os.Remove(filepath.Join(pkgDir, "bin")); err != nil {
		t.Fatal(err)
	}
	if p2, _, err := pkg.Executable(t.Context(), cache, runtime.GOOS, runtime.GOARCH); err != nil || p2 != path {
		t.Fatalf("cached run = %s, %v", p2, err)
	}

	// A tampered cache entry is re-verified and not returned.
	if err := os.WriteFile(path, []byte("evil"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pkg.Executable(t.Context(), cache, runtime.GOOS, runtime.GOARCH); err == nil {
		t.Fatal("tampered cache entry was returned")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tampered cache entry still present: %v", err)
	}
}

func TestFetchRefusesChecksumMismatch(t *testing.T) {
	pkgDir, cache := t.TempDir(), t.TempDir()
	content := []byte("not what the manifest promised")
	if err := os.WriteFile(filepath.Join(pkgDir, "bin"), content, 0o755); err != nil {
		t.Fatal(err)
	}
	expected := sum([]byte("the real binary"))
	pkg := writePkg(t, pkgDir, nativeManifest(fmt.Sprintf("path = \"bin\"\nsha256 = %q", expected)))

	path, _, err := pkg.Executable(t.Context(), cache, runtime.GOOS, runtime.GOARCH)
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("err = %v, want ErrChecksumMismatch", err)
	}
	if path != "" {
		t.Errorf("a path was returned despite the mismatch: %s", path)
	}
	msg := err.Error()
	if !strings.Contains(msg, "expected "+expected) || !strings.Contains(msg, "got "+sum(content)) {
		t.Errorf("error does not name both digests: %s", msg)
	}
	if left := cacheEntries(t, cache); len(left) != 0 {
		t.Errorf("cache holds %v after a refused fetch", left)
	}
}

func TestFetchURL(t *testing.T) {
	content := []byte("binary from the release page")
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/bin":
			w.Write(content)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	t.Run("downloads, verifies, then reuses the cache", func(t *testing.T) {
		hits.Store(0)
		cache := t.TempDir()
		pkg := writePkg(t, t.TempDir(), nativeManifest(fmt.Sprintf("url = %q\nsha256 = %q", srv.URL+"/bin", sum(content))))
		f := &Fetcher{CacheDir: cache, HTTPClient: srv.Client()}
		r, err := f.Fetch(t.Context(), pkg, runtime.GOOS, runtime.GOARCH)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(r.Path); string(got) != string(content) || r.SHA256 != sum(content) {
			t.Fatalf("fetched %q (sha %s)", got, r.SHA256)
		}
		if _, err := f.Fetch(t.Context(), pkg, runtime.GOOS, runtime.GOARCH); err != nil {
			t.Fatal(err)
		}
		if n := hits.Load(); n != 1 {
			t.Errorf("server hit %d times, want 1 (second fetch from cache)", n)
		}
	})

	t.Run("mismatch refused", func(t *testing.T) {
		cache := t.TempDir()
		pkg := writePkg(t, t.TempDir(), nativeManifest(fmt.Sprintf("url = %q\nsha256 = %q", srv.URL+"/bin", sum([]byte("other")))))
		_, err := (&Fetcher{CacheDir: cache, HTTPClient: srv.Client()}).Fetch(t.Context(), pkg, runtime.GOOS, runtime.GOARCH)
		if !errors.Is(err, ErrChecksumMismatch) {
			t.Fatalf("err = %v, want ErrChecksumMismatch", err)
		}
		if left := cacheEntries(t, cache); len(left) != 0 {
			t.Errorf("cache holds %v", left)
		}
	})

	t.Run("HTTP error names the URL without its query", func(t *testing.T) {
		pkg := writePkg(t, t.TempDir(), nativeManifest(fmt.Sprintf("url = %q\nsha256 = %q", srv.URL+"/missing?token=s3cr3t", sum(content))))
		_, err := (&Fetcher{CacheDir: t.TempDir(), HTTPClient: srv.Client()}).Fetch(t.Context(), pkg, runtime.GOOS, runtime.GOARCH)
		if err == nil || !strings.Contains(err.Error(), "HTTP 404") || !strings.Contains(err.Error(), srv.URL+"/missing") {
			t.Fatalf("err = %v, want HTTP 404 naming the URL", err)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error leaks the query string: %v", err)
		}
	})

	t.Run("size limit", func(t *testing.T) {
		cache := t.TempDir()
		pkg := writePkg(t, t.TempDir(), nativeManifest(fmt.Sprintf("url = %q\nsha256 = %q", srv.URL+"/bin", sum(content))))
		_, err := (&Fetcher{CacheDir: cache, HTTPClient: srv.Client(), MaxBytes: 8}).Fetch(t.Context(), pkg, runtime.GOOS, runtime.GOARCH)
		if err == nil || !strings.Contains(err.Error(), "limit") {
			t.Fatalf("err = %v, want a size limit error", err)
		}
		if left := cacheEntries(t, cache); len(left) != 0 {
			t.Errorf("cache holds %v", left)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		pkg := writePkg(t, t.TempDir(), nativeManifest(fmt.Sprintf("url = %q\nsha256 = %q", srv.URL+"/bin", sum(content))))
		_, err := (&Fetcher{CacheDir: t.TempDir(), HTTPClient: srv.Client()}).Fetch(ctx, pkg, runtime.GOOS, runtime.GOARCH)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestNativeSourceSelection(t *testing.T) {
	sha := sum(nil)
	pkg := writePkg(t, t.TempDir(), fmt.Sprintf(`
name = "sel"
version = "0.1.0"
[[sources]]
kind = "container"
image = "x/sel:1"
[[sources]]
kind = "native"
binaries = [{ os = "linux", arch = "amd64", path = "a", sha256 = %q }]
[[sources]]
kind = "testing"
dir = "."
`, sha))
	for _, c := range []struct {
		goos, goarch string
		want         int
	}{
		{"linux", "amd64", 1},
		{"darwin", "arm64", 2},
	} {
		if got, err := pkg.NativeSource(c.goos, c.goarch); err != nil || got != c.want {
			t.Errorf("NativeSource(%s/%s) = %d, %v; want %d", c.goos, c.goarch, got, err, c.want)
		}
	}

	only := writePkg(t, t.TempDir(), `
name = "box"
version = "0.1.0"
[[sources]]
kind = "container"
image = "x/box:1"
`)
	_, _, err := only.Executable(t.Context(), t.TempDir(), "linux", "amd64")
	if !errors.Is(err, ErrNoNativeSource) {
		t.Fatalf("container-only Executable = %v, want ErrNoNativeSource", err)
	}
	if !strings.Contains(err.Error(), "linux/amd64") || !strings.Contains(err.Error(), "container") {
		t.Errorf("error does not say what was there: %v", err)
	}
}

func writeGoProgram(t *testing.T, dir, body string) {
	t.Helper()
	files := map[string]string{
		"go.mod":  "module tiny\n\ngo 1.26\n",
		"main.go": body,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func testingManifest(dir string) string {
	return fmt.Sprintf("name = \"tiny\"\nversion = \"0.1.0\"\n[[sources]]\nkind = \"testing\"\ndir = %q\nargs = [\"run\"]\n", dir)
}

func TestFetchTestingBuildsGoProgram(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain on PATH")
	}
	pkgDir, cache := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(pkgDir, "src"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeGoProgram(t, filepath.Join(pkgDir, "src"), `package main

import (
	"fmt"
	"os"
)

func main() { fmt.Println("tiny", os.Args[1:]) }
`)
	pkg := writePkg(t, pkgDir, testingManifest("src"))
	path, args, err := pkg.Executable(t.Context(), cache, runtime.GOOS, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != cache {
		t.Errorf("built binary %s is not in the cache %s", path, cache)
	}
	got, _ := hashFile(path)
	if filepath.Base(path) != got {
		t.Errorf("built binary named %s, but its sha256 is %s", filepath.Base(path), got)
	}
	out, err := exec.CommandContext(t.Context(), path, args...).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "tiny [run]\n" {
		t.Errorf("program printed %q", out)
	}
	// No build directories are left behind.
	if left := cacheEntries(t, cache); len(left) != 1 {
		t.Errorf("cache = %v, want only the binary", left)
	}
}

func TestFetchTestingBuildFailureKeepsCompilerOutput(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain on PATH")
	}
	pkgDir := t.TempDir()
	writeGoProgram(t, pkgDir, "package main\n\nfunc main() { undefinedThing() }\n")
	pkg := writePkg(t, pkgDir, testingManifest("."))
	_, _, err := pkg.Executable(t.Context(), t.TempDir(), runtime.GOOS, runtime.GOARCH)
	var be *BuildError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v (%T), want *BuildError", err, err)
	}
	if !strings.Contains(be.Output, "undefined: undefinedThing") || !strings.Contains(err.Error(), "undefined: undefinedThing") {
		t.Errorf("compiler output missing from error: %v", err)
	}
}

// TestEchoExampleBuildsAndServes is the local provider's path end to end:
// load examples/echo, build its testing source, run it, check its health.
func TestEchoExampleBuildsAndServes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs examples/echo")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain on PATH")
	}
	pkg, err := Load("../../examples/echo")
	if err != nil {
		t.Fatal(err)
	}
	path, args, err := pkg.Executable(t.Context(), t.TempDir(), runtime.GOOS, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "PORT=0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	// echo logs `msg=listening addr=127.0.0.1:NNNN` once bound.
	var addr string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if _, after, ok := strings.Cut(sc.Text(), "addr="); ok && strings.Contains(sc.Text(), "listening") {
			addr = after
			break
		}
	}
	if addr == "" {
		t.Fatal("echo never reported its address")
	}
	go io.Copy(io.Discard, stderr)
	resp, err := http.Get("http://" + addr + pkg.Manifest.Health.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("health = %d %q", resp.StatusCode, body)
	}
}
