package ociimage_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/ociimage"
)

// layerEntry is one entry of the image's layer as a reader sees it.
type layerEntry struct {
	hdr  *tar.Header
	data []byte
}

// read unpacks an archive the way an engine would: index → manifest →
// config and layer, checking digests and the Docker manifest.json on the way.
func read(t *testing.T, archive []byte) (ociimage.Index, ociimage.Config, []layerEntry) {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	blob := func(d ociimage.Descriptor) []byte {
		b, ok := files["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
		sum := sha256.Sum256(b)
		if !ok || "sha256:"+hex.EncodeToString(sum[:]) != d.Digest || int64(len(b)) != d.Size {
			t.Fatalf("blob %s missing or does not match its descriptor", d.Digest)
		}
		return b
	}
	var idx ociimage.Index
	var man ociimage.Manifest
	var cfg ociimage.Config
	if err := json.Unmarshal(files["index.json"], &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %v %+v", err, idx)
	}
	if err := json.Unmarshal(blob(idx.Manifests[0]), &man); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(blob(man.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &docker); err != nil || len(docker) != 1 || docker[0].Config != "blobs/sha256/"+strings.TrimPrefix(man.Config.Digest, "sha256:") {
		t.Fatalf("manifest.json does not point at the OCI config: %v %+v", err, docker)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(man.Layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	layer, _ := io.ReadAll(zr)
	sum := sha256.Sum256(layer)
	if cfg.RootFS.DiffIDs[0] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("diff id does not match the uncompressed layer")
	}
	var out []layerEntry
	lr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(lr)
		out = append(out, layerEntry{h, b})
	}
	return idx, cfg, out
}

func TestWrite(t *testing.T) {
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
	idx, cfg, layer := read(t, buf.Bytes())
	if idx.Manifests[0].Annotations[ociimage.RefNameAnnotation] != img.RefName || idx.Manifests[0].Platform.Architecture != "arm64" {
		t.Errorf("index = %+v", idx.Manifests[0])
	}
	if cfg.Architecture != "arm64" || cfg.Config.Entrypoint[0] != "/echo" || cfg.Config.Env[0] != "A=b" || cfg.Config.User != "1:2" {
		t.Errorf("config = %+v", cfg)
	}
	if len(layer) != 2 || layer[0].hdr.Name != "echo" || string(layer[0].data) != "binary" || layer[0].hdr.Mode != 0o755 {
		t.Fatalf("layer = %+v", layer)
	}
	if d := layer[1].hdr; d.Typeflag != tar.TypeDir || d.Name != "run/x/" || d.Mode != 0o700 || d.Uid != 65534 || d.Gid != 65534 {
		t.Errorf("directory entry = %+v", d)
	}
	var again bytes.Buffer
	if err := ociimage.Write(&again, img); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Errorf("the same image twice gave different archives (%v)", err)
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
