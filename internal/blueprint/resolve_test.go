package blueprint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func putManifest(t *testing.T, dir, name string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, ManifestFile)
	doc := "name = \"" + name + "\"\nversion = \"0.1.0\"\nsources = [{ kind = \"testing\", dir = \".\" }]\n"
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// Resolve reads the working directory, so these tests chdir and cannot run
// in parallel.
func TestResolve(t *testing.T) {
	work, search := t.TempDir(), t.TempDir()
	alpha := putManifest(t, filepath.Join(work, "a", "alpha"), "alpha")
	putManifest(t, filepath.Join(work, "1", "2", "3", "4", "5"), "deep")
	putManifest(t, filepath.Join(work, ".hidden", "h"), "hidden")
	putManifest(t, filepath.Join(work, "node_modules", "n"), "nodemod")
	putManifest(t, filepath.Join(work, "vendor", "v"), "vendored")
	beta := putManifest(t, filepath.Join(search, "pkgs", "beta"), "beta")
	dupA := putManifest(t, filepath.Join(work, "x", "twin"), "twin")
	dupB := putManifest(t, filepath.Join(search, "twin"), "twin")
	putManifest(t, filepath.Join(work, "broken"), "broken")
	if err := os.WriteFile(filepath.Join(work, "broken", ManifestFile), []byte("name = \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)

	t.Run("name in working tree", func(t *testing.T) {
		pkg, err := Resolve("alpha", []string{search})
		if err != nil {
			t.Fatal(err)
		}
		if pkg.File != alpha {
			t.Errorf("File = %s, want %s", pkg.File, alpha)
		}
	})
	t.Run("name in search path", func(t *testing.T) {
		pkg, err := Resolve("beta", []string{filepath.Join(work, "nonexistent"), search})
		if err != nil {
			t.Fatal(err)
		}
		if pkg.File != beta {
			t.Errorf("File = %s, want %s", pkg.File, beta)
		}
	})
	t.Run("ambiguous", func(t *testing.T) {
		_, err := Resolve("twin", []string{search})
		if err == nil || !strings.Contains(err.Error(), "ambiguous") ||
			!strings.Contains(err.Error(), dupA) || !strings.Contains(err.Error(), dupB) {
			t.Fatalf("err = %v, want ambiguity naming both manifests", err)
		}
	})
	t.Run("search path inside working tree is not a duplicate", func(t *testing.T) {
		pkg, err := Resolve("alpha", []string{filepath.Join(work, "a")})
		if err != nil || pkg.File != alpha {
			t.Fatalf("Resolve = %v, %v", pkg, err)
		}
	})
	for _, name := range []string{"hidden", "nodemod", "vendored", "deep"} {
		t.Run("skips "+name, func(t *testing.T) {
			if _, err := Resolve(name, nil); err == nil {
				t.Fatalf("found %s, which is in a skipped or too deep directory", name)
			}
		})
	}
	t.Run("missing lists where it looked", func(t *testing.T) {
		missing := filepath.Join(work, "nonexistent")
		_, err := Resolve("gamma", []string{search, missing})
		if err == nil {
			t.Fatal("found a package that does not exist")
		}
		msg := err.Error()
		for _, want := range []string{`"gamma"`, work, search, missing + " (missing)", "broken"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
	})
	t.Run("path forms", func(t *testing.T) {
		for _, arg := range []string{"./a/alpha", "a/alpha", alpha, filepath.Dir(alpha)} {
			pkg, err := Resolve(arg, nil)
			if err != nil || pkg.File != alpha {
				t.Errorf("Resolve(%q) = %v, %v", arg, pkg, err)
			}
		}
	})
	t.Run("existing bare directory is a path", func(t *testing.T) {
		// "b" has a manifest named "other": as an existing path it is loaded,
		// not looked up by name.
		other := putManifest(t, filepath.Join(work, "b"), "other")
		pkg, err := Resolve("b", nil)
		if err != nil || pkg.File != other {
			t.Fatalf("Resolve(b) = %v, %v", pkg, err)
		}
	})
	t.Run("existing non-manifest file is still a name", func(t *testing.T) {
		// A binary named like the package, as `go build` leaves it.
		if err := os.WriteFile(filepath.Join(work, "alpha"), []byte("\x7fELF"), 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(filepath.Join(work, "alpha"))
		pkg, err := Resolve("alpha", nil)
		if err != nil || pkg.File != alpha {
			t.Fatalf("Resolve(alpha) = %v, %v", pkg, err)
		}
	})
	t.Run("invalid name", func(t *testing.T) {
		if _, err := Resolve("Not A Name", nil); err == nil || !strings.Contains(err.Error(), "neither") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestLoadChecksArchives: a container source's archive must be a regular
// file inside the package, symlinks resolved — found by Load (and so by
// `bpm package validate`), not by a deploy.
func TestLoadChecksArchives(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "img.tar"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		setup func(dir string)
		want  string // "" for accepted
	}{
		"present":    {func(dir string) { os.WriteFile(filepath.Join(dir, "img.tar"), []byte("x"), 0o644) }, ""},
		"missing":    {func(dir string) {}, "no such file"},
		"directory":  {func(dir string) { os.Mkdir(filepath.Join(dir, "img.tar"), 0o755) }, "not a regular file"},
		"leads away": {func(dir string) { os.Symlink(filepath.Join(outside, "img.tar"), filepath.Join(dir, "img.tar")) }, "outside the package"},
	} {
		dir := t.TempDir()
		c.setup(dir)
		manifest := "name = \"x\"\nversion = \"1.0.0\"\n[[sources]]\nkind = \"container\"\nimage = \"x:1\"\narchive = \"img.tar\"\n"
		if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(dir)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "sources[0].archive")):
			t.Errorf("%s: %v, want an error on sources[0].archive saying %q", name, err, c.want)
		}
	}
}
