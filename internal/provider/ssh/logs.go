package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/supervisor"
)

// logFiles lists the instance's log files oldest first, the supervisor's
// rotation order: instance.log.N … instance.log.1, instance.log.
func (p *Provider) logFiles(c *hostConn, dir string) []string {
	ld := path.Join(dir, supervisor.LogDir)
	var rotated []string
	for i := 1; ; i++ {
		name := path.Join(ld, supervisor.LogFile+"."+strconv.Itoa(i))
		if _, err := c.sftp.Stat(name); err != nil {
			break
		}
		rotated = append([]string{name}, rotated...)
	}
	return append(rotated, path.Join(ld, supervisor.LogFile))
}

// Logs copies the instance's output to w, read over SFTP. Follow polls the
// live file: the supervisor rotates by renaming, which a poll of size sees
// as the file shrinking.
func (p *Provider) Logs(ctx context.Context, ref provider.Ref, opts provider.LogOptions, w io.Writer) error {
	if p.dockerRuntime() {
		return p.containerLogs(ctx, ref, opts, w)
	}
	c, dir, _, err := p.find(ctx, ref)
	if err != nil {
		return fmt.Errorf("ssh: logs: %w", err)
	}
	var all bytes.Buffer
	for _, f := range p.logFiles(c, dir) {
		b, err := c.readFile(f, 1<<30)
		if err != nil && !isNotExist(err) {
			return fmt.Errorf("ssh: logs: %w", err)
		}
		all.Write(b)
	}
	out := all.Bytes()
	if opts.Tail > 0 {
		out = tailLines(out, opts.Tail)
	}
	if _, err := w.Write(out); err != nil {
		return err
	}
	if !opts.Follow {
		return nil
	}
	live := path.Join(dir, supervisor.LogDir, supervisor.LogFile)
	var off int64
	if fi, err := c.sftp.Stat(live); err == nil {
		off = fi.Size()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		fi, err := c.sftp.Stat(live)
		if err != nil {
			if isNotExist(err) {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("ssh: logs: %w", err)
		}
		if fi.Size() < off {
			off = 0 // rotated
		}
		if fi.Size() == off {
			continue
		}
		f, err := c.sftp.Open(live)
		if err != nil {
			continue
		}
		if _, err := f.Seek(off, io.SeekStart); err == nil {
			n, err := io.Copy(w, io.LimitReader(onlyReader{f}, fi.Size()-off))
			off += n
			if err != nil && !errors.Is(err, io.EOF) {
				f.Close()
				return err
			}
		}
		f.Close()
	}
}

func tailLines(b []byte, n int) []byte {
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	i := end
	for ; i > 0; i-- {
		if b[i-1] == '\n' {
			n--
			if n == 0 {
				break
			}
		}
	}
	return b[i:]
}
