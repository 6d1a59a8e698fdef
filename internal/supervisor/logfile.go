package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// LogFiles returns the paths of an instance's log files that exist, oldest
// first (instance.log.N … instance.log.1, instance.log).
func LogFiles(dir string) []string {
	logDir := filepath.Join(dir, LogDir)
	var out []string
	// Rotation keeps at most MaxFiles files, but the reader does not know the
	// spec's value (and it may have changed), so it walks down from a bound
	// generous enough for any sane configuration.
	for i := 99; i >= 1; i-- {
		p := filepath.Join(logDir, LogFile+"."+strconv.Itoa(i))
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	p := filepath.Join(logDir, LogFile)
	if _, err := os.Stat(p); err == nil {
		out = append(out, p)
	}
	return out
}

// rotatingWriter appends to logs/instance.log and rotates it so no file ever
// exceeds maxBytes and at most maxFiles files exist.
type rotatingWriter struct {
	mu       sync.Mutex
	path     string
	maxBytes int64
	maxFiles int
	f        *os.File
	size     int64
}

func openRotating(path string, maxBytes int64, maxFiles int) (*rotatingWriter, error) {
	w := &rotatingWriter{path: path, maxBytes: maxBytes, maxFiles: maxFiles}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *rotatingWriter) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("supervisor: open log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("supervisor: open log: %w", err)
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// Write never fails the caller for a rotation problem: losing log lines is
// better than blocking or killing the service. It always reports len(p).
func (w *rotatingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	if w.f == nil {
		// A previous rotation failed to reopen; try again rather than drop
		// every later line.
		if err := w.open(); err != nil {
			return n, nil
		}
	}
	for len(p) > 0 {
		room := w.maxBytes - w.size
		if room <= 0 {
			if err := w.rotate(); err != nil {
				return n, nil
			}
			continue
		}
		chunk := p
		if int64(len(chunk)) > room {
			chunk = p[:room]
			// Prefer to cut after a newline so lines stay whole across files,
			// unless that would leave the file nearly empty.
			if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
				chunk = chunk[:i+1]
			} else if w.size > 0 {
				if err := w.rotate(); err != nil {
					return n, nil
				}
				continue
			}
		}
		m, err := w.f.Write(chunk)
		w.size += int64(m)
		p = p[m:]
		if err != nil {
			return n, nil
		}
	}
	return n, nil
}

// rotate shifts instance.log.i to .i+1, dropping the oldest, and starts a
// fresh instance.log. A reader following the old file sees it renamed (same
// inode, new name) and switches to the new one.
func (w *rotatingWriter) rotate() error {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if w.maxFiles <= 1 {
		os.Remove(w.path)
	} else {
		os.Remove(w.path + "." + strconv.Itoa(w.maxFiles-1))
		for i := w.maxFiles - 2; i >= 1; i-- {
			os.Rename(w.path+"."+strconv.Itoa(i), w.path+"."+strconv.Itoa(i+1))
		}
		os.Rename(w.path, w.path+".1")
	}
	return w.open()
}

func (w *rotatingWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
