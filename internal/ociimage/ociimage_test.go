package ociimage_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/ociimage"
)

func TestWriteRead(t *testing.T) {
	img := ociimage.Image{
		RefName: "bpm.local/echo:0.1.0",
		Files: []ociimage.File{
			{Name: "echo", Mode: 0o755, Data: []byte("binary")},
			{Name: "run/x", Mode: 0o700, Dir: true, UID: 65534, GID: 65534},
		},
		Entrypoint: []string{"/echo"},
		Env:        []string{"A=b"},
		User:       "1:2",
		Arch:       "arm64",
	}
	var buf bytes.Buffer
	if err := ociimage.Write(&buf, img); err != nil {
		t.Fatal(err)
	}
	got, err := ociimage.Read(bytes.NewReader(buf.Bytes()), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	img.Files[1].Data = nil
	if !reflect.DeepEqual(got, img) {
		t.Errorf("read back %+v\nwrote     %+v", got, img)
	}
	// Docker before 25 reads only manifest.json: it must name the same
	// config and layer as the OCI index.
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		files[h.Name], _ = io.ReadAll(tr)
	}
	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &docker); err != nil || len(docker) != 1 ||
		files[docker[0].Config] == nil || len(docker[0].Layers) != 1 || files[docker[0].Layers[0]] == nil ||
		!reflect.DeepEqual(docker[0].RepoTags, []string{img.RefName}) {
		t.Errorf("manifest.json = %s (%v)", files["manifest.json"], err)
	}
	var again bytes.Buffer
	if err := ociimage.Write(&again, img); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Errorf("the same image twice gave different archives (%v)", err)
	}
}

func TestReadRefusesTampering(t *testing.T) {
	var buf bytes.Buffer
	if err := ociimage.Write(&buf, ociimage.Image{Files: []ociimage.File{{Name: "x", Mode: 0o755, Data: []byte("payload")}}, Entrypoint: []string{"/x"}}); err != nil {
		t.Fatal(err)
	}
	// Flip one byte inside the gzip'd layer blob: its digest no longer
	// matches.
	b := buf.Bytes()
	i := bytes.Index(b, []byte{0x1f, 0x8b})
	if i < 0 {
		t.Fatal("no gzip stream in the archive")
	}
	b[i+20] ^= 0xff
	if _, err := ociimage.Read(bytes.NewReader(b), 1<<20); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("tampered layer: %v, want a digest mismatch", err)
	}
}

func TestWriteRefusesBadInput(t *testing.T) {
	for name, img := range map[string]ociimage.Image{
		"no files":      {Entrypoint: []string{"/x"}},
		"no entrypoint": {Files: []ociimage.File{{Name: "x"}}},
		"absolute":      {Files: []ociimage.File{{Name: "/x"}}, Entrypoint: []string{"/x"}},
		"escapes":       {Files: []ociimage.File{{Name: "../x"}}, Entrypoint: []string{"/x"}},
	} {
		if err := ociimage.Write(io.Discard, img); err == nil {
			t.Errorf("%s: Write accepted it", name)
		}
	}
}

// FuzzRead: any bytes give an image or an error, never a panic, and an
// archive Write made always reads back.
func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	ociimage.Write(&buf, ociimage.Image{Files: []ociimage.File{{Name: "x", Mode: 0o755, Data: []byte("x")}}, Entrypoint: []string{"/x"}})
	f.Add(buf.Bytes())
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ociimage.Read(bytes.NewReader(data), 1<<20)
	})
}

func TestCheckStaticELF(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	static := filepath.Join(dir, "static")
	cmd := exec.Command("go", "build", "-o", static, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := os.Open(static)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if arch, err := ociimage.CheckStaticELF(f); err != nil || arch != "arm64" {
		t.Errorf("static arm64 Go binary: %q, %v", arch, err)
	}
	// A system binary linked against libc.
	sh, err := os.Open("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh")
	}
	defer sh.Close()
	if _, err := ociimage.CheckStaticELF(sh); !errors.Is(err, ociimage.ErrNotStatic) {
		t.Errorf("/bin/sh: %v, want ErrNotStatic", err)
	}
	if _, err := ociimage.CheckStaticELF(strings.NewReader("#!/bin/sh\n")); err == nil {
		t.Error("a script passed as a static executable")
	}
}
