package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	File   string
	Line   int // 1-based; 0 when the problem has no single place
	Column int
	// Msg names the key ("remote.aws.tunnel.private_key: ...") or the
	// section ("remote \"aws\": ...") it is about. It never holds a secret.
	Msg string
}

func (p Problem) String() string {
	switch {
	case p.Line > 0 && p.File != "":
		return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Column, p.Msg)
	case p.File != "":
		return p.File + ": " + p.Msg
	}
	return p.Msg
}

// Error is every problem found in a config file, so the operator fixes them
// in one round rather than one per run.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// problems collects Problems during a load.
type problems struct {
	file string
	list []Problem
}

func (ps *problems) add(pos position, format string, args ...any) {
	ps.list = append(ps.list, Problem{File: ps.file, Line: pos.Line, Column: pos.Col, Msg: fmt.Sprintf(format, args...)})
}

func (ps *problems) empty() bool { return len(ps.list) == 0 }

// err returns the problems in file order, or nil.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	list := append([]Problem(nil), ps.list...)
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if (a.Line == 0) != (b.Line == 0) {
			return b.Line == 0 // placeless problems last
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	// A file that is not a config at all (a wrong --remote-config) would
	// otherwise bury the first, useful problems under thousands.
	if len(list) > maxProblems {
		more := len(list) - maxProblems
		list = append(list[:maxProblems], Problem{File: ps.file, Msg: fmt.Sprintf("... and %d more problems", more)})
	}
	return &Error{Problems: list}
}

// maxProblems is how many problems one load reports.
const maxProblems = 50

// FieldError is one invalid field found by a Validate method. Field is the
// key path relative to the struct validated ("resources.memory_limit"); the
// loader prefixes it with "remote.NAME." and finds its line.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// FieldErrors collects FieldErrors so a Validate method reports every
// problem, not only the first. The zero value is ready to use.
type FieldErrors struct {
	list []error
}

// Add records a problem with field. Messages must not include secret values.
func (fe *FieldErrors) Add(field, format string, args ...any) {
	fe.list = append(fe.list, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Nest records the problems of a sub-struct's Validate, with their fields
// prefixed by prefix (for example "tunnel").
func (fe *FieldErrors) Nest(prefix string, err error) {
	for _, f := range FlattenFieldErrors(err) {
		field := prefix
		if f.Field != "" {
			field = joinField(prefix, f.Field)
		}
		fe.list = append(fe.list, &FieldError{Field: field, Msg: f.Msg})
	}
}

// Err returns the collected problems joined, or nil when there are none.
func (fe *FieldErrors) Err() error {
	return errors.Join(fe.list...)
}

// FlattenFieldErrors lists the FieldErrors inside err (as built by
// FieldErrors or errors.Join); any other error becomes a FieldError with an
// empty Field.
func FlattenFieldErrors(err error) []*FieldError {
	if err == nil {
		return nil
	}
	if f, ok := err.(*FieldError); ok {
		return []*FieldError{f}
	}
	if multi, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*FieldError
		for _, e := range multi.Unwrap() {
			out = append(out, FlattenFieldErrors(e)...)
		}
		return out
	}
	return []*FieldError{{Msg: err.Error()}}
}

func joinField(prefix, field string) string {
	if prefix == "" {
		return field
	}
	if field == "" {
		return prefix
	}
	if strings.HasPrefix(field, "[") {
		return prefix + field
	}
	return prefix + "." + field
}
