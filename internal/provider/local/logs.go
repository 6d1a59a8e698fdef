package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/supervisor"
)

// followPoll is how often Follow looks for new output. Polling, not
// inotify: it is portable, and a quarter second is plenty for a human.
const followPoll = 250 * time.Millisecond

// Logs writes the instance's output, oldest rotated file first. With Tail,
// only the last Tail lines. With Follow, it then keeps writing new output,
// across rotations, until ctx ends or the instance's supervisor is gone and
// everything it wrote has been sent.
func (p *Provider) Logs(ctx context.Context, ref provider.Ref, opts provider.LogOptions, w io.Writer) error {
	dir, h, err := p.instanceDir(ref)
	if err != nil {
		return fmt.Errorf("local: logs: %w", err)
	}
	if err := p.logs(ctx, dir, h, opts, w); err != nil {
		return fmt.Errorf("local: logs %s: %w", ref.InstanceID, err)
	}
	return nil
}

func (p *Provider) logs(ctx context.Context, dir string, h handle, opts provider.LogOptions, w io.Writer) error {
	livePath := filepath.Join(dir, supervisor.LogDir, supervisor.LogFile)
	// Open every file before reading any, so a rotation while we read
	// cannot make us skip or repeat a file: open descriptors follow renames.
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, path := range supervisor.LogFiles(dir) {
		f, err := os.Open(path)
		if err != nil {
			if isNotExist(err) {
				continue
			}
			return err
		}
		files = append(files, f)
	}

	if opts.Tail > 0 {
		if err := tail(files, opts.Tail, w); err != nil {
			return err
		}
	} else {
		for _, f := range files {
			if _, err := io.Copy(w, f); err != nil {
				return err
			}
		}
	}
	if !opts.Follow {
		return nil
	}

	// Continue from the live file we just read to its end, if it was one.
	var live *os.File
	if n := len(files); n > 0 && files[n-1].Name() == livePath {
		live = files[n-1]
		files = files[:n-1] // ownership moves to follow
	}
	if live == nil && len(files) > 0 {
		// The live file was rotated away while we read: continue from the
		// newest file we have.
		live = files[len(files)-1]
		files = files[:len(files)-1]
	}
	return follow(ctx, dir, h, livePath, live, w)
}

// tail writes the last n lines of the concatenated files.
func tail(files []*os.File, n int, w io.Writer) error {
	ring := make([]string, 0, n)
	next := 0
	for _, f := range files {
		r := bufio.NewReader(f)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				if len(ring) < n {
					ring = append(ring, line)
				} else {
					ring[next] = line
					next = (next + 1) % n
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
		}
	}
	for i := range ring {
		if _, err := io.WriteString(w, ring[(next+i)%len(ring)]); err != nil {
			return err
		}
	}
	return nil
}

func follow(ctx context.Context, dir string, h handle, livePath string, f *os.File, w io.Writer) error {
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		var n int64
		if f != nil {
			var err error
			if n, err = io.Copy(w, f); err != nil {
				return err
			}
		}
		// Once the file we read is no longer the live one it has been
		// rotated away and will not grow: finish it and move to the file
		// written after it.
		if !isLive(f, livePath) {
			if nf := successor(dir, f); nf != nil {
				if f != nil {
					if _, err := io.Copy(w, f); err != nil {
						nf.Close()
						return err
					}
					f.Close()
				}
				f = nf
				continue
			}
		}
		if n == 0 {
			if _, _, alive := supervisorOf(dir, h); !alive {
				return nil // nothing more will be written
			}
		}
		timer.Reset(followPoll)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
	}
}

func isLive(f *os.File, livePath string) bool {
	if f == nil {
		return false
	}
	cur, err := f.Stat()
	if err != nil {
		return false
	}
	fi, err := os.Stat(livePath)
	return err == nil && os.SameFile(cur, fi)
}

// successor opens the log file written after f: the next newer name in the
// rotation, or the oldest file left when f itself was already deleted (the
// service outran retention between two polls; those lines are gone).
func successor(dir string, f *os.File) *os.File {
	paths := supervisor.LogFiles(dir) // oldest first
	next := 0
	if f != nil {
		cur, err := f.Stat()
		if err != nil {
			return nil
		}
		for i, p := range paths {
			if fi, err := os.Stat(p); err == nil && os.SameFile(cur, fi) {
				next = i + 1
				break
			}
		}
	}
	if next >= len(paths) {
		return nil
	}
	nf, err := os.Open(paths[next])
	if err != nil {
		return nil
	}
	return nf
}
