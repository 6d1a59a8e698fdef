package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"runtime"
	"time"
)

// OCI media types used in the archive.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// RefNameAnnotation is the index annotation engines take the image's name
// from.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *Platform         `json:"platform,omitempty"`
}

// Platform names an image's OS and architecture.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// Index is an OCI image index (index.json).
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// Manifest is an OCI image manifest.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// Config is the part of the OCI image config bpm sets.
type Config struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		Entrypoint []string `json:"Entrypoint"`
		Env        []string `json:"Env,omitempty"`
		User       string   `json:"User,omitempty"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// File is one regular file or directory of the image's only layer.
type File struct {
	Name     string // relative path inside the image, e.g. "bpm"
	Mode     int64  // permission bits, e.g. 0o755
	Data     []byte // a regular file's content
	Dir      bool   // a directory (Data is ignored)
	UID, GID int    // owner; 0 is root
}

// Image describes the image to write.
type Image struct {
	// RefName is the name engines give the loaded image, e.g.
	// "bpm-gateway:dev"; empty leaves it untagged.
	RefName    string
	Files      []File
	Entrypoint []string
	Env        []string // KEY=value
	// User is "uid:gid"; empty means root.
	User string
	// Arch is the GOARCH spelling; empty means the running one.
	Arch string
	// Created stamps files and config; zero means the Unix epoch, which
	// keeps the archive reproducible.
	Created time.Time
}

// Write writes img to w as a tar archive.
func Write(w io.Writer, img Image) error {
	if len(img.Files) == 0 {
		return errors.New("image: no files")
	}
	if len(img.Entrypoint) == 0 {
		return errors.New("image: no entrypoint")
	}
	if img.Created.IsZero() {
		img.Created = time.Unix(0, 0).UTC()
	}
	if img.Arch == "" {
		img.Arch = runtime.GOARCH
	}
	// The layer: an uncompressed tar (its digest is the diff id), then gzip.
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	for _, f := range img.Files {
		name := path.Clean(f.Name)
		if path.IsAbs(name) || name == "." || name == ".." || len(name) > 2 && name[:3] == "../" {
			return fmt.Errorf("image: file %q: want a relative path inside the image", f.Name)
		}
		h := &tar.Header{Name: name, Mode: f.Mode, Size: int64(len(f.Data)), ModTime: img.Created,
			Typeflag: tar.TypeReg, Uid: f.UID, Gid: f.GID, Format: tar.FormatPAX}
		if f.Dir {
			h.Name, h.Typeflag, h.Size = name+"/", tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("image: layer: %w", err)
		}
		if f.Dir {
			continue
		}
		if _, err := tw.Write(f.Data); err != nil {
			return fmt.Errorf("image: layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("image: layer: %w", err)
	}
	diffID := digest(layerTar.Bytes())
	var layer bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&layer, gzip.BestSpeed)
	if _, err := zw.Write(layerTar.Bytes()); err != nil {
		return fmt.Errorf("image: compress layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("image: compress layer: %w", err)
	}

	var cfg Config
	cfg.Architecture, cfg.OS = img.Arch, "linux"
	cfg.Config.Entrypoint = img.Entrypoint
	cfg.Config.Env = img.Env
	cfg.Config.User = img.User
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{diffID}
	cfgJSON, _ := json.Marshal(struct {
		Config
		Created string `json:"created"`
	}{cfg, img.Created.Format(time.RFC3339)})

	man := Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest,
		Config: Descriptor{MediaType: MediaTypeConfig, Digest: digest(cfgJSON), Size: int64(len(cfgJSON))},
		Layers: []Descriptor{{MediaType: MediaTypeLayer, Digest: digest(layer.Bytes()), Size: int64(layer.Len())}},
	}
	manJSON, _ := json.Marshal(man)
	desc := Descriptor{MediaType: MediaTypeManifest, Digest: digest(manJSON), Size: int64(len(manJSON)),
		Platform: &Platform{Architecture: img.Arch, OS: "linux"}}
	if img.RefName != "" {
		desc.Annotations = map[string]string{RefNameAnnotation: img.RefName}
	}
	idxJSON, _ := json.Marshal(Index{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{desc}})
	// manifest.json is the Docker archive format (`docker save`). Engines
	// before Docker 25 (Debian 12 ships 20.10) load only that, ignoring the
	// OCI layout; both point at the same blobs.
	var tags []string
	if img.RefName != "" {
		tags = []string{img.RefName}
	}
	dockerJSON, _ := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: blobPath(man.Config.Digest), RepoTags: tags, Layers: []string{blobPath(man.Layers[0].Digest)}}})

	out := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", idxJSON},
		{"manifest.json", dockerJSON},
		{blobPath(man.Config.Digest), cfgJSON},
		{blobPath(man.Layers[0].Digest), layer.Bytes()},
		{blobPath(desc.Digest), manJSON},
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := out.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: img.Created}); err != nil {
			return fmt.Errorf("image: write archive: %w", err)
		}
	}
	for _, f := range files {
		if err := out.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: img.Created, Typeflag: tar.TypeReg}); err != nil {
			return fmt.Errorf("image: write archive: %w", err)
		}
		if _, err := out.Write(f.data); err != nil {
			return fmt.Errorf("image: write archive: %w", err)
		}
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("image: write archive: %w", err)
	}
	return nil
}

// ErrNotStatic means an executable needs a dynamic loader and cannot run
// in a FROM scratch image.
var ErrNotStatic = errors.New("executable is not statically linked")

// CheckStaticELF reports whether data is a Linux ELF executable that runs
// without a dynamic loader (no PT_INTERP), and its GOARCH spelling.
func CheckStaticELF(r io.ReaderAt) (arch string, err error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return "", fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%w: it needs a dynamic loader (build Go with CGO_ENABLED=0)", ErrNotStatic)
		}
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_386:
		return "386", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	case elf.EM_PPC64:
		return "ppc64le", nil
	case elf.EM_S390:
		return "s390x", nil
	}
	return "", fmt.Errorf("ELF machine %v: no GOARCH for it", f.Machine)
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func blobPath(d string) string { return "blobs/sha256/" + d[len("sha256:"):] }

// Read parses an archive Write wrote (or any single-image OCI layout
// archive with one layer of regular files and directories) back into an
// Image, checking every blob against its digest and the layer against the
// config's diff id. Tests use it to check what an image holds.
func Read(r io.Reader, maxBytes int64) (Image, error) {
	var img Image
	files := map[string][]byte{}
	tr := tar.NewReader(io.LimitReader(r, maxBytes))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return img, fmt.Errorf("image: read archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return img, fmt.Errorf("image: read %s: %w", h.Name, err)
		}
		files[path.Clean(h.Name)] = b
	}
	blob := func(d Descriptor) ([]byte, error) {
		if len(d.Digest) <= len("sha256:") || d.Digest[:len("sha256:")] != "sha256:" {
			return nil, fmt.Errorf("image: digest %q: want sha256:HEX", d.Digest)
		}
		b, ok := files[blobPath(d.Digest)]
		if !ok {
			return nil, fmt.Errorf("image: blob %s missing", d.Digest)
		}
		if digest(b) != d.Digest || int64(len(b)) != d.Size {
			return nil, fmt.Errorf("image: blob %s does not match its descriptor", d.Digest)
		}
		return b, nil
	}
	var idx Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		return img, fmt.Errorf("image: index.json: %w", err)
	}
	if len(idx.Manifests) != 1 {
		return img, fmt.Errorf("image: index.json lists %d manifests, want 1", len(idx.Manifests))
	}
	img.RefName = idx.Manifests[0].Annotations[RefNameAnnotation]
	var man Manifest
	var cfg Config
	b, err := blob(idx.Manifests[0])
	if err == nil {
		err = json.Unmarshal(b, &man)
	}
	if err != nil {
		return img, fmt.Errorf("image: manifest: %w", err)
	}
	if b, err = blob(man.Config); err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		return img, fmt.Errorf("image: config: %w", err)
	}
	img.Entrypoint, img.Env, img.User, img.Arch = cfg.Config.Entrypoint, cfg.Config.Env, cfg.Config.User, cfg.Architecture
	if len(man.Layers) != 1 || len(cfg.RootFS.DiffIDs) != 1 {
		return img, fmt.Errorf("image: %d layers, %d diff ids; want one of each", len(man.Layers), len(cfg.RootFS.DiffIDs))
	}
	lb, err := blob(man.Layers[0])
	if err != nil {
		return img, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(lb))
	if err != nil {
		return img, fmt.Errorf("image: layer: %w", err)
	}
	layer, err := io.ReadAll(io.LimitReader(zr, maxBytes))
	if err != nil {
		return img, fmt.Errorf("image: layer: %w", err)
	}
	if digest(layer) != cfg.RootFS.DiffIDs[0] {
		return img, errors.New("image: the layer does not match the config's diff id")
	}
	lr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return img, fmt.Errorf("image: layer: %w", err)
		}
		f := File{Name: path.Clean(h.Name), Mode: h.Mode, UID: h.Uid, GID: h.Gid, Dir: h.Typeflag == tar.TypeDir}
		if !f.Dir {
			if f.Data, err = io.ReadAll(lr); err != nil {
				return img, fmt.Errorf("image: layer %s: %w", h.Name, err)
			}
		}
		img.Files = append(img.Files, f)
	}
	return img, nil
}
