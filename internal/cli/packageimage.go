package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/ociimage"
)

func newPackageImageCommand(g *globals) *cobra.Command {
	var file, ref, arch string
	cmd := &cobra.Command{
		Use:   "image PATH -o FILE",
		Short: "Build a FROM scratch container image archive of a package's binary",
		Long: `Build the package's native binary for linux (its testing source is compiled
with CGO_ENABLED=0; a native source's binary is verified against its sha256)
and write a container image archive holding only that binary, as /NAME, with
entrypoint ["/NAME"]. The container source's args are not baked in: providers
pass them when they start the container.

The archive is an OCI image layout that also carries Docker's manifest.json, so
'docker load -i FILE', 'ctr -n k8s.io images import FILE' and a docker
remote's image_archives all take it. It is named after the package's first
container source (--tag overrides), which is how the docker and kubernetes
providers find it. No registry and no Docker daemon are needed. The binary
must be statically linked: a binary that needs a dynamic loader is refused.`,
		Example: `  bpm package image examples/echo -o echo.tar
  docker load -i echo.tar
  bpm package image ./my-blueprint -o my.tar --tag registry.example/my:1.0 --arch arm64`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usagef("-o FILE is required")
			}
			pkg, err := loadPackageArg(g, args[0])
			if err != nil {
				return err
			}
			if ref == "" {
				ref = containerImage(pkg)
				if ref == "" {
					return invalidf("package %s has no container source to name the image after: pass --tag", pkg.Manifest.Name)
				}
			}
			img, err := buildPackageImage(cmd.Context(), pkg, ref, arch)
			if err != nil {
				return err
			}
			if err := writeFileAtomic(file, img, 0o644); err != nil {
				return err
			}
			g.streams.Notice("wrote %s (%s, %.1f MiB)", file, ref, float64(len(img))/(1<<20))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "output", "o", "", "archive to write (replaced atomically)")
	cmd.Flags().StringVar(&ref, "tag", "", "image name (default: the package's first container source image)")
	cmd.Flags().StringVar(&arch, "arch", runtime.GOARCH, "GOARCH of the image")
	return cmd
}

// containerImage is the image of pkg's first container source, or "".
func containerImage(pkg *blueprint.Package) string {
	for _, s := range pkg.Manifest.Sources {
		if s.Kind == blueprint.SourceContainer {
			return s.Image
		}
	}
	return ""
}

// buildPackageImage fetches (or builds) pkg's linux/arch binary and packs
// it into an image archive named ref.
func buildPackageImage(ctx context.Context, pkg *blueprint.Package, ref, arch string) ([]byte, error) {
	cache, err := os.MkdirTemp("", "bpm-image-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(cache)
	r, err := (&blueprint.Fetcher{CacheDir: cache, Static: true}).Fetch(ctx, pkg, "linux", arch)
	if err != nil {
		return nil, packageErr(err)
	}
	bin, err := os.ReadFile(r.Path)
	if err != nil {
		return nil, err
	}
	got, err := ociimage.CheckStaticELF(bytes.NewReader(bin))
	if err != nil {
		return nil, invalidf("package %s: sources[%d]: %v", pkg.Manifest.Name, r.Source, err)
	}
	if got != arch {
		return nil, invalidf("package %s: sources[%d]: the binary is for %s, not %s", pkg.Manifest.Name, r.Source, got, arch)
	}
	var buf bytes.Buffer
	name := pkg.Manifest.Name
	err = ociimage.Write(&buf, ociimage.Image{
		RefName:    ref,
		Files:      []ociimage.File{{Name: name, Mode: 0o755, Data: bin}},
		Entrypoint: []string{"/" + name},
		Arch:       arch,
	})
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it into place, so a reader never sees half an archive.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}
