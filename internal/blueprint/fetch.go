package blueprint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNoNativeSource means the package has no source that can run as a local
// process on the requested platform (only containers, or no binary for this
// os/arch). A caller that can run containers may try those instead.
var ErrNoNativeSource = errors.New("no source runnable as a local process")

// ErrChecksumMismatch means fetched bits did not hash to the manifest's
// sha256. Such bits are deleted, never returned.
var ErrChecksumMismatch = errors.New("sha256 mismatch")

// DefaultMaxBinaryBytes bounds a download or copy when Fetcher.MaxBytes is 0,
// so a wrong URL cannot fill the disk before the checksum refuses it.
const DefaultMaxBinaryBytes int64 = 1 << 30

// BuildError is a failed `go build` of a testing source. It keeps the
// compiler output, which is the part the operator needs to read.
type BuildError struct {
	Dir    string
	Output string
	Err    error
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("go build in %s: %v\n%s", e.Dir, e.Err, strings.TrimRight(e.Output, "\n"))
}

func (e *BuildError) Unwrap() error { return e.Err }

// Runnable is a verified local executable for one source of a package.
type Runnable struct {
	Path   string   // absolute, inside the cache directory
	Args   []string // the source's args
	Source int      // index into Manifest.Sources
	SHA256 string   // of the file at Path
}

// Fetcher turns a package's native or testing source into a verified local
// executable stored content-addressed (by sha256) in CacheDir.
type Fetcher struct {
	CacheDir string
	// HTTPClient fetches url binaries; nil means a plain client (the context
	// bounds the request, not a client timeout).
	HTTPClient *http.Client
	// MaxBytes bounds a fetched binary; 0 means DefaultMaxBinaryBytes.
	MaxBytes int64
	// GoCommand builds testing sources; empty means "go" from PATH.
	GoCommand string
	// Static builds testing sources with CGO_ENABLED=0, for images that
	// have no libc (FROM scratch).
	Static bool
}

// Executable is the local provider's entry point: it fetches (or builds) and
// verifies the first source runnable on goos/goarch into cacheDir and returns
// the executable's path and arguments.
func (p *Package) Executable(ctx context.Context, cacheDir, goos, goarch string) (string, []string, error) {
	r, err := (&Fetcher{CacheDir: cacheDir}).Fetch(ctx, p, goos, goarch)
	if err != nil {
		return "", nil, err
	}
	return r.Path, r.Args, nil
}

// NativeSource returns the index of the first source, in manifest order, that
// can run as a process on goos/goarch: a native source with a binary for that
// platform, or a testing source (built for that platform). The error wraps
// ErrNoNativeSource when there is none.
func (p *Package) NativeSource(goos, goarch string) (int, error) {
	var kinds []string
	for i, s := range p.Manifest.Sources {
		switch s.Kind {
		case SourceNative:
			if s.binaryFor(goos, goarch) != nil {
				return i, nil
			}
		case SourceTesting:
			return i, nil
		}
		kinds = append(kinds, string(s.Kind))
	}
	return -1, fmt.Errorf("blueprint %s: nothing runs on %s/%s (sources: %s): %w",
		p.Manifest.Name, goos, goarch, strings.Join(kinds, ", "), ErrNoNativeSource)
}

func (s *Source) binaryFor(goos, goarch string) *Binary {
	for i := range s.Binaries {
		if s.Binaries[i].OS == goos && s.Binaries[i].Arch == goarch {
			return &s.Binaries[i]
		}
	}
	return nil
}

// Fetch selects a source with NativeSource and makes it runnable. A native
// binary is taken from the cache when its content still hashes right,
// otherwise copied or downloaded and verified; a testing source is built.
func (f *Fetcher) Fetch(ctx context.Context, p *Package, goos, goarch string) (Runnable, error) {
	idx, err := p.NativeSource(goos, goarch)
	if err != nil {
		return Runnable{}, err
	}
	if f.CacheDir == "" {
		return Runnable{}, errors.New("fetch: no cache directory")
	}
	cache, err := filepath.Abs(f.CacheDir)
	if err != nil {
		return Runnable{}, fmt.Errorf("fetch: %w", err)
	}
	// 0700: the cache holds executables the manager will run; nobody else
	// should be able to swap one in between verification and exec.
	if err := os.MkdirAll(cache, 0o700); err != nil {
		return Runnable{}, fmt.Errorf("fetch: create cache: %w", err)
	}
	s := &p.Manifest.Sources[idx]
	r := Runnable{Source: idx, Args: append([]string(nil), s.Args...)}
	switch s.Kind {
	case SourceNative:
		b := s.binaryFor(goos, goarch)
		r.Path, err = f.fetchBinary(ctx, cache, p.Dir, b)
		r.SHA256 = b.SHA256
	case SourceTesting:
		r.Path, r.SHA256, err = f.build(ctx, cache, p, s, goos, goarch)
	}
	if err != nil {
		return Runnable{}, fmt.Errorf("fetch %s sources[%d]: %w", p.Manifest.Name, idx, err)
	}
	return r, nil
}

func (f *Fetcher) maxBytes() int64 {
	if f.MaxBytes > 0 {
		return f.MaxBytes
	}
	return DefaultMaxBinaryBytes
}

func (f *Fetcher) fetchBinary(ctx context.Context, cache, pkgDir string, b *Binary) (string, error) {
	want := strings.ToLower(b.SHA256)
	final := filepath.Join(cache, want)
	if got, err := hashFile(final); err == nil {
		if got == want {
			// Re-chmod in case someone loosened or stripped the mode.
			if err := os.Chmod(final, 0o755); err != nil {
				return "", fmt.Errorf("cache: %w", err)
			}
			return final, nil
		}
		// A corrupted cache entry is replaced, not trusted.
		if err := os.Remove(final); err != nil {
			return "", fmt.Errorf("cache: remove corrupt %s: %w", final, err)
		}
	}

	var src io.ReadCloser
	var from string
	if b.URL != "" {
		from = redactURL(b.URL)
		body, err := f.download(ctx, b.URL)
		if err != nil {
			return "", err
		}
		src = body
	} else {
		path := b.Path
		if !filepath.IsAbs(path) {
			path = filepath.Join(pkgDir, path)
		}
		from = path
		file, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("open binary: %w", err)
		}
		src = file
	}
	defer src.Close()

	tmp, err := os.CreateTemp(cache, ".fetch-*")
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	// Removing the temp file is a no-op once it has been renamed.
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	h := sha256.New()
	limit := f.maxBytes()
	n, err := copyContext(ctx, io.MultiWriter(tmp, h), io.LimitReader(src, limit+1))
	if err != nil {
		return "", fmt.Errorf("copy %s: %w", from, err)
	}
	if n > limit {
		return "", fmt.Errorf("copy %s: larger than the %d byte limit", from, limit)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return "", fmt.Errorf("verify %s: %w: expected %s, got %s", from, ErrChecksumMismatch, want, got)
	}
	if err := tmp.Chmod(0o755); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	return final, nil
}

func (f *Fetcher) download(ctx context.Context, rawURL string) (io.ReadCloser, error) {
	safe := redactURL(rawURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", safe, redactURLError(err))
	}
	client := f.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", safe, redactURLError(err))
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("download %s: HTTP %s", safe, resp.Status)
	}
	if resp.ContentLength > f.maxBytes() {
		resp.Body.Close()
		return nil, fmt.Errorf("download %s: %d bytes is over the %d byte limit", safe, resp.ContentLength, f.maxBytes())
	}
	return resp.Body, nil
}

// build compiles a testing source for goos/goarch and stores the result
// content-addressed like a fetched binary.
func (f *Fetcher) build(ctx context.Context, cache string, p *Package, s *Source, goos, goarch string) (path, sum string, err error) {
	dir := s.Dir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(p.Dir, dir)
	}
	if fi, err := os.Stat(dir); err != nil {
		return "", "", fmt.Errorf("build: %w", err)
	} else if !fi.IsDir() {
		return "", "", fmt.Errorf("build: %s is not a directory", dir)
	}
	work, err := os.MkdirTemp(cache, ".build-*")
	if err != nil {
		return "", "", fmt.Errorf("build: %w", err)
	}
	defer os.RemoveAll(work)
	out := filepath.Join(work, p.Manifest.Name)

	goCmd := f.GoCommand
	if goCmd == "" {
		goCmd = "go"
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch)
	if f.Static {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", "", &BuildError{Dir: dir, Output: string(output), Err: err}
	}
	sum, err = hashFile(out)
	if err != nil {
		return "", "", fmt.Errorf("build: %w", err)
	}
	final := filepath.Join(cache, sum)
	if err := os.Chmod(out, 0o755); err != nil {
		return "", "", fmt.Errorf("build: %w", err)
	}
	if err := os.Rename(out, final); err != nil {
		return "", "", fmt.Errorf("build: %w", err)
	}
	return final, sum, nil
}

func hashFile(path string) (string, error) {
	file, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer file.Close()
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// redactURL keeps scheme, host and path: query strings of download URLs are
// often signed tokens, and errors end up in logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid url>"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// redactURLError strips the URL net/http puts into its errors, since the
// caller already names the redacted one.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// copyContext is io.Copy that stops when ctx is cancelled: a local file copy
// has no other way to notice.
func copyContext(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, 64<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		r, rerr := src.Read(buf)
		if r > 0 {
			w, werr := dst.Write(buf[:r])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
