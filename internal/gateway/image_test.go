package gateway_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/ociimage"
	"github.com/bpm-project/bpm/internal/version"
)

// readArchive parses an OCI layout tar and checks every blob against its
// descriptor's digest and size.
func readArchive(t *testing.T, data []byte) (ociimage.Index, ociimage.Manifest, ociimage.Config, []byte) {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
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
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %q", files["oci-layout"])
	}
	blob := func(d ociimage.Descriptor) []byte {
		b, ok := files["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
		if !ok {
			t.Fatalf("blob %s missing", d.Digest)
		}
		sum := sha256.Sum256(b)
		if "sha256:"+hex.EncodeToString(sum[:]) != d.Digest || int64(len(b)) != d.Size {
			t.Fatalf("blob %s: digest or size does not match its descriptor", d.Digest)
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
	if len(man.Layers) != 1 || man.Layers[0].MediaType != ociimage.MediaTypeLayer {
		t.Fatalf("layers = %+v", man.Layers)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(man.Layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	layerTar, _ := io.ReadAll(zr)
	sum := sha256.Sum256(layerTar)
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("diff_ids %v do not match the uncompressed layer", cfg.RootFS.DiffIDs)
	}
	lr := tar.NewReader(bytes.NewReader(layerTar))
	h, err := lr.Next()
	if err != nil || h.Name != "bpm" || h.Mode&0o111 == 0 {
		t.Fatalf("layer entry = %+v, %v", h, err)
	}
	bin, _ := io.ReadAll(lr)
	return idx, man, cfg, bin
}

func TestWriteImageStructure(t *testing.T) {
	bin := []byte("\x7fELF pretend binary")
	var buf bytes.Buffer
	if err := gateway.WriteImage(&buf, bytes.NewReader(bin), gateway.ImageOptions{RefName: "bpm-gateway:test"}); err != nil {
		t.Fatal(err)
	}
	idx, _, cfg, got := readArchive(t, buf.Bytes())
	if !bytes.Equal(got, bin) {
		t.Error("layer does not hold the binary")
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/bpm gateway" || cfg.OS != "linux" {
		t.Errorf("config = %+v", cfg)
	}
	if idx.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "bpm-gateway:test" {
		t.Errorf("index annotations = %v", idx.Manifests[0].Annotations)
	}
	// Same input, same archive: reproducible.
	var again bytes.Buffer
	gateway.WriteImage(&again, bytes.NewReader(bin), gateway.ImageOptions{RefName: "bpm-gateway:test"})
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("archive is not reproducible")
	}
}

func TestCheckStaticMatchesBuild(t *testing.T) {
	err := gateway.CheckStatic()
	cgo := os.Getenv("CGO_ENABLED")
	if cgo == "" {
		out, _ := exec.Command("go", "env", "CGO_ENABLED").Output()
		cgo = strings.TrimSpace(string(out))
	}
	if (cgo == "0") != (err == nil) {
		t.Errorf("CGO_ENABLED=%s but CheckStatic = %v", cgo, err)
	}
}

// TestIntegrationImageDockerLoad builds a static bpm, writes its gateway
// image and loads it into the test environment's dockerd.
func TestIntegrationImageDockerLoad(t *testing.T) {
	host := os.Getenv("BPM_TEST_DOCKER_HOST")
	if host == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BPM_TEST_DOCKER_HOST not set in CI (start the test environment: scripts/testenv)")
		}
		t.Skip("BPM_TEST_DOCKER_HOST not set; start the test environment (scripts/testenv) to run this")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bpm")
	build := exec.Command("go", "build", "-o", bin, "github.com/bpm-project/bpm/cmd/bpm")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build static bpm: %v\n%s", err, out)
	}
	archive := filepath.Join(dir, "gw.tar")
	if out, err := exec.Command(bin, "gateway", "image", "-o", archive).CombinedOutput(); err != nil {
		t.Fatalf("bpm gateway image: %v\n%s", err, out)
	}
	f, _ := os.Open(archive)
	data, _ := io.ReadAll(f)
	f.Close()
	readArchive(t, data)
	load := exec.Command("docker", "-H", host, "load", "-i", archive)
	out, err := load.CombinedOutput()
	if err != nil {
		t.Fatalf("docker load: %v\n%s", err, out)
	}
	t.Logf("docker load: %s", out)
	// The engine knows the image by the tag bpm gave it and sees its
	// entrypoint.
	insp, err := exec.Command("docker", "-H", host, "image", "inspect", "--format", "{{json .Config.Entrypoint}}", "bpm-gateway:"+version.Version).CombinedOutput()
	if err != nil || strings.TrimSpace(string(insp)) != `["/bpm","gateway"]` {
		t.Fatalf("docker image inspect: %v %s", err, insp)
	}
	exec.Command("docker", "-H", host, "image", "rm", "bpm-gateway:"+version.Version).Run()
}
