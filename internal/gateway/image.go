package gateway

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"time"
)

// OCI media types used in the image archive.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

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

// ImageConfig is the part of the OCI image config bpm sets.
type ImageConfig struct {
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

// ErrNotStatic means the running binary links libc and cannot run in a
// FROM scratch image.
var ErrNotStatic = errors.New("bpm binary is not static (build it with CGO_ENABLED=0)")

// CheckStatic reports ErrNotStatic unless the running binary was built with
// CGO_ENABLED=0. Binaries without build info (stripped of it) are assumed
// dynamic: better a clear refusal than an image that fails to start.
func CheckStatic() error {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return fmt.Errorf("%w: no build information in the binary", ErrNotStatic)
	}
	for _, s := range bi.Settings {
		if s.Key == "CGO_ENABLED" {
			if s.Value == "0" {
				return nil
			}
			return fmt.Errorf("%w: it was built with CGO_ENABLED=%s", ErrNotStatic, s.Value)
		}
	}
	return fmt.Errorf("%w: its build information does not record CGO_ENABLED", ErrNotStatic)
}

// ImageOptions tunes WriteImage.
type ImageOptions struct {
	// RefName is the org.opencontainers.image.ref.name annotation (the tag
	// engines give the loaded image), e.g. "bpm-gateway:dev".
	RefName string
	// Created stamps files and config; zero means the Unix epoch, which
	// keeps the archive reproducible for a given binary.
	Created time.Time
}

// WriteImage writes an OCI image layout as a tar archive to w: a FROM
// scratch image whose one layer holds binary as /bpm, with entrypoint
// ["/bpm", "gateway"].
func WriteImage(w io.Writer, binary io.Reader, opts ImageOptions) error {
	if opts.Created.IsZero() {
		opts.Created = time.Unix(0, 0).UTC()
	}
	bin, err := io.ReadAll(binary)
	if err != nil {
		return fmt.Errorf("gateway image: read binary: %w", err)
	}
	// The layer: an uncompressed tar (its digest is the diff id), then gzip.
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	if err := tw.WriteHeader(&tar.Header{Name: "bpm", Mode: 0o755, Size: int64(len(bin)), ModTime: opts.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("gateway image: layer: %w", err)
	}
	if _, err := tw.Write(bin); err != nil {
		return fmt.Errorf("gateway image: layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("gateway image: layer: %w", err)
	}
	diffID := digest(layerTar.Bytes())
	var layer bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&layer, gzip.BestSpeed)
	if _, err := zw.Write(layerTar.Bytes()); err != nil {
		return fmt.Errorf("gateway image: compress layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("gateway image: compress layer: %w", err)
	}

	var cfg ImageConfig
	cfg.Architecture, cfg.OS = runtime.GOARCH, "linux"
	cfg.Config.Entrypoint = []string{"/bpm", "gateway"}
	// 65534 is nobody: the gateway needs no privilege (userspace tunnel,
	// outbound UDP only).
	cfg.Config.User = "65534:65534"
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{diffID}
	cfgJSON, _ := json.Marshal(struct {
		ImageConfig
		Created string `json:"created"`
	}{cfg, opts.Created.Format(time.RFC3339)})

	man := Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest,
		Config: Descriptor{MediaType: MediaTypeConfig, Digest: digest(cfgJSON), Size: int64(len(cfgJSON))},
		Layers: []Descriptor{{MediaType: MediaTypeLayer, Digest: digest(layer.Bytes()), Size: int64(layer.Len())}},
	}
	manJSON, _ := json.Marshal(man)
	desc := Descriptor{MediaType: MediaTypeManifest, Digest: digest(manJSON), Size: int64(len(manJSON)),
		Platform: &Platform{Architecture: runtime.GOARCH, OS: "linux"}}
	if opts.RefName != "" {
		desc.Annotations = map[string]string{"org.opencontainers.image.ref.name": opts.RefName}
	}
	idxJSON, _ := json.Marshal(Index{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{desc}})
	// manifest.json is the Docker archive format (`docker save`). Engines
	// before Docker 25 (Debian 12 ships 20.10) load only that, ignoring the
	// OCI layout; both point at the same blobs, as `docker save` does today.
	var tags []string
	if opts.RefName != "" {
		tags = []string{opts.RefName}
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
		if err := out.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: opts.Created}); err != nil {
			return fmt.Errorf("gateway image: write archive: %w", err)
		}
	}
	for _, f := range files {
		if err := out.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: opts.Created, Typeflag: tar.TypeReg}); err != nil {
			return fmt.Errorf("gateway image: write archive: %w", err)
		}
		if _, err := out.Write(f.data); err != nil {
			return fmt.Errorf("gateway image: write archive: %w", err)
		}
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("gateway image: write archive: %w", err)
	}
	return nil
}

// WriteImageFromSelf writes the image of the running binary, refusing a
// binary that is not static.
func WriteImageFromSelf(w io.Writer, opts ImageOptions) error {
	if err := CheckStatic(); err != nil {
		return fmt.Errorf("gateway image: %w", err)
	}
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("gateway image: open running binary: %w", err)
	}
	defer f.Close()
	return WriteImage(w, f, opts)
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func blobPath(d string) string { return "blobs/sha256/" + d[len("sha256:"):] }
