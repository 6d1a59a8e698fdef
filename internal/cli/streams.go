package cli

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// IOStreams are the command's standard streams, injected so tests can
// capture them.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// Quiet silences notices on ErrOut (not errors).
	Quiet bool
}

// OSStreams returns the process's streams.
func OSStreams() *IOStreams {
	return &IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
}

// Notice writes a progress line to stderr unless quiet.
func (s *IOStreams) Notice(format string, args ...any) {
	if s.Quiet {
		return
	}
	fmt.Fprintf(s.ErrOut, format+"\n", args...)
}

// Colour reports whether output to w may be coloured: only on a terminal and
// only when NO_COLOR is unset (https://no-color.org).
func Colour(w io.Writer) bool {
	if _, set := os.LookupEnv("NO_COLOR"); set {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
