package cli

import (
	"fmt"
	"io"
	"os"
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
