package ssh

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"time"
)

type fileSum struct {
	size  int64
	mtime time.Time
	sum   string
}

// sha256File hashes a local file, cached while its size and mtime hold.
func (p *Provider) sha256File(name string) (string, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	c, ok := p.sums[name]
	p.mu.Unlock()
	if ok && c.size == fi.Size() && c.mtime.Equal(fi.ModTime()) {
		return c.sum, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	p.mu.Lock()
	p.sums[name] = fileSum{size: fi.Size(), mtime: fi.ModTime(), sum: sum}
	p.mu.Unlock()
	return sum, nil
}

// base is bpm's directory on the host, absolute.
func (p *Provider) base(c *hostConn) string {
	if path.IsAbs(p.opts.BaseDir) {
		return path.Clean(p.opts.BaseDir)
	}
	return path.Join(c.home, p.opts.BaseDir)
}

// installBinary puts the local file at remote path dst (named by its hash)
// unless it is there already. The upload goes to a temporary name, its
// sha256 is checked by the host itself, and only then is it renamed into
// place, so dst never names a partial or corrupted file.
func (p *Provider) installBinary(ctx context.Context, c *hostConn, local, dstDir, prefix string) (string, error) {
	sum, err := p.sha256File(local)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", local, err)
	}
	dst := path.Join(dstDir, prefix+sum)
	if fi, err := c.sftp.Stat(dst); err == nil && fi.Mode().IsRegular() {
		return dst, nil // content-addressed and only ever renamed in verified
	}
	if err := c.sftp.MkdirAll(dstDir); err != nil {
		return "", fmt.Errorf("mkdir %s: %w", dstDir, err)
	}
	tmp := dst + ".tmp-" + randHex(6)
	if err := c.upload(local, tmp, 0o700); err != nil {
		_ = c.sftp.Remove(tmp)
		return "", err
	}
	out, err := c.run(ctx, command("sha256sum", "--", tmp))
	if err != nil {
		_ = c.sftp.Remove(tmp)
		return "", err
	}
	if got, _, _ := strings.Cut(out, " "); got != sum {
		_ = c.sftp.Remove(tmp)
		return "", fmt.Errorf("upload %s: sha256 on the host is %q, want %s", local, got, sum)
	}
	if err := c.sftp.PosixRename(tmp, dst); err != nil {
		_ = c.sftp.Remove(tmp)
		return "", fmt.Errorf("rename %s: %w", dst, err)
	}
	p.logger.Debug("uploaded", "host", c.addr, "file", dst)
	return dst, nil
}

func (c *hostConn) upload(local, remote string, mode os.FileMode) error {
	in, err := os.Open(local)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := c.sftp.OpenFile(remote, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create %s: %w", remote, err)
	}
	if err := out.Chmod(mode); err != nil {
		out.Close()
		return fmt.Errorf("chmod %s: %w", remote, err)
	}
	if _, err := out.ReadFrom(in); err != nil {
		out.Close()
		return fmt.Errorf("upload %s: %w", remote, err)
	}
	return out.Close()
}

// writeFile writes b to remote path name atomically with mode, which is
// set before any byte is written: spec files hold secrets.
func (c *hostConn) writeFile(name string, b []byte, mode os.FileMode) error {
	tmp := name + ".tmp-" + randHex(6)
	f, err := c.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		_ = c.sftp.Remove(tmp)
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = c.sftp.PosixRename(tmp, name)
	}
	if err != nil {
		_ = c.sftp.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// readFile reads a remote file of at most limit bytes. It reads until EOF
// rather than trusting the size, which /proc files report as 0.
func (c *hostConn) readFile(name string, limit int64) ([]byte, error) {
	f, err := c.sftp.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(onlyReader{f}, limit))
}

// onlyReader hides WriteTo so io.ReadAll uses plain sequential reads,
// which work for files whose reported size is wrong (/proc).
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(b []byte) (int, error) { return o.r.Read(b) }

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || os.IsNotExist(err)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func hostPlatform() Platform { return Platform{OS: runtime.GOOS, Arch: runtime.GOARCH} }

// platform asks the host what it is, so the right binaries go up; once per
// connection.
func (c *hostConn) platform(ctx context.Context) (Platform, error) {
	c.factsMu.Lock()
	defer c.factsMu.Unlock()
	if c.plat != (Platform{}) {
		return c.plat, nil
	}
	out, err := c.run(ctx, command("uname", "-sm"))
	if err != nil {
		return Platform{}, err
	}
	pl, err := parseUname(out)
	if err == nil {
		c.plat = pl
	}
	return pl, err
}

// cpuCount is the number of CPUs the login session may use (nproc honours
// affinity and cgroup limits); once per connection.
func (c *hostConn) cpuCount(ctx context.Context) (int, error) {
	c.factsMu.Lock()
	defer c.factsMu.Unlock()
	if c.cpus > 0 {
		return c.cpus, nil
	}
	out, err := c.run(ctx, command("nproc"))
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("ssh: %s: nproc: %q", c.addr, out)
	}
	c.cpus = n
	return n, nil
}

func parseUname(out string) (Platform, error) {
	f := strings.Fields(out)
	if len(f) != 2 {
		return Platform{}, fmt.Errorf("uname -sm: unexpected %q", out)
	}
	var pl Platform
	switch f[0] {
	case "Linux":
		pl.OS = "linux"
	case "Darwin":
		pl.OS = "darwin"
	case "FreeBSD":
		pl.OS = "freebsd"
	default:
		return Platform{}, fmt.Errorf("uname -sm: unsupported system %q", f[0])
	}
	switch f[1] {
	case "x86_64", "amd64":
		pl.Arch = "amd64"
	case "aarch64", "arm64":
		pl.Arch = "arm64"
	case "armv7l", "armv6l":
		pl.Arch = "arm"
	case "i386", "i686":
		pl.Arch = "386"
	case "riscv64":
		pl.Arch = "riscv64"
	default:
		return Platform{}, fmt.Errorf("uname -sm: unsupported machine %q", f[1])
	}
	return pl, nil
}

// hasSystemd detects, once per connection, whether the host could run
// instances as systemd user units: systemd is PID 1 (sd_booted(3)'s test,
// /run/systemd/system exists only then; an installed systemctl proves
// nothing, containers and minimal hosts ship one without systemd) and the
// login user's manager answers (without lingering or a session there is
// none). fresh is true when this call asked the host. Only detected: every
// host runs instances under `bpm supervise` (see doc.go).
func (c *hostConn) hasSystemd(ctx context.Context) (has, fresh bool, err error) {
	c.factsMu.Lock()
	defer c.factsMu.Unlock()
	if c.systemdKnown {
		return c.systemd, false, nil
	}
	_, err = c.sftp.Stat("/run/systemd/system")
	switch {
	case isNotExist(err):
	case err != nil:
		return false, false, err
	default:
		_, err = c.run(ctx, command("systemctl", "--user", "show-environment"))
		var re *RemoteError
		if err != nil && !errors.As(err, &re) {
			return false, false, err // the host did not answer: unknown
		}
		has = err == nil
	}
	c.systemd, c.systemdKnown = has, true
	return has, true, nil
}
