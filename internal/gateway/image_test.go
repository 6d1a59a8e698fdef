package gateway_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/ociimage"
	"github.com/bpm-project/bpm/internal/testenv"
	"github.com/bpm-project/bpm/internal/version"
)

func TestWriteImageStructure(t *testing.T) {
	bin := []byte("\x7fELF pretend binary")
	var buf bytes.Buffer
	if err := gateway.WriteImage(&buf, bytes.NewReader(bin), gateway.ImageOptions{RefName: "bpm-gateway:test"}); err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Read(bytes.NewReader(buf.Bytes()), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Files) == 0 || img.Files[0].Name != "bpm" || !bytes.Equal(img.Files[0].Data, bin) || img.Files[0].Mode&0o111 == 0 {
		t.Error("layer does not hold the binary as an executable /bpm")
	}
	if strings.Join(img.Entrypoint, " ") != "/bpm gateway" || img.User != "65534:65534" || img.RefName != "bpm-gateway:test" {
		t.Errorf("image = entrypoint %v user %q name %q", img.Entrypoint, img.User, img.RefName)
	}
	// The bridge directory instances share with the gateway: the gateway's
	// own, 0700 (the engine copies that into the empty volume).
	var dir *ociimage.File
	for i := range img.Files {
		if img.Files[i].Name == strings.TrimPrefix(gateway.BridgeDir, "/") {
			dir = &img.Files[i]
		}
	}
	if dir == nil || !dir.Dir || dir.Mode != 0o700 || dir.UID != 65534 {
		t.Errorf("bridge dir entry = %+v, want a 0700 directory owned by 65534", dir)
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
	host := testenv.Require(t, "docker").Docker.Host
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
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ociimage.Read(f, 1<<30)
	f.Close()
	if err != nil {
		t.Fatalf("bpm gateway image wrote an archive that does not read back: %v", err)
	}
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
