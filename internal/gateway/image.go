package gateway

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/bpm-project/bpm/internal/ociimage"
)

// BridgeDir is where, inside its image, the gateway serves instance bridge
// sockets on a Docker engine: the image holds it owned by the gateway's
// user (nobody), and the engine copies that ownership into the empty named
// volume mounted there, which the remote's instances mount too.
const BridgeDir = "/run/bpm/bridge"

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

// nobody is the uid and gid the gateway runs as in its image.
const nobody = 65534

// WriteImage writes an OCI image layout as a tar archive to w: a FROM
// scratch image whose one layer holds binary as /bpm, with entrypoint
// ["/bpm", "gateway"].
func WriteImage(w io.Writer, binary io.Reader, opts ImageOptions) error {
	bin, err := io.ReadAll(binary)
	if err != nil {
		return fmt.Errorf("gateway image: read binary: %w", err)
	}
	err = ociimage.Write(w, ociimage.Image{
		RefName: opts.RefName,
		Files: []ociimage.File{
			{Name: "bpm", Mode: 0o755, Data: bin},
			{Name: "run", Mode: 0o755, Dir: true},
			{Name: "run/bpm", Mode: 0o755, Dir: true},
			{Name: BridgeDir[1:], Mode: 0o700, Dir: true, UID: nobody, GID: nobody},
		},
		Entrypoint: []string{"/bpm", "gateway"},
		// 65534 is nobody: the gateway needs no privilege (userspace
		// tunnel, outbound UDP only).
		User:    fmt.Sprintf("%d:%d", nobody, nobody),
		Created: opts.Created,
	})
	if err != nil {
		return fmt.Errorf("gateway %w", err)
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
