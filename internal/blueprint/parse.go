package blueprint

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/bpm-project/bpm/internal/tomlstrict"
)

// ManifestFile is the name of a package's manifest inside its directory.
const ManifestFile = "blueprint.toml"

// maxManifestBytes bounds what Load reads: a manifest is a few hundred bytes,
// and anything near this size is a mistake (a binary named blueprint.toml),
// not a blueprint.
const maxManifestBytes = 1 << 20

// Problem is one thing wrong with a manifest. Line and Column are 1-based and
// zero when the position is not known (validation works on decoded values,
// which no longer carry positions).
type Problem struct {
	Field   string // e.g. "sources[1].binaries[0].sha256"; empty for syntax errors
	Line    int
	Column  int
	Message string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "%d:%d: ", p.Line, p.Column)
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ParseError is a manifest that could not be decoded: malformed TOML, an
// unknown key, or a value of the wrong type. Every problem carries a position.
type ParseError struct {
	File     string
	Problems []Problem
}

func (e *ParseError) Error() string { return formatProblems(e.File, e.Problems) }

// ValidationError lists every rule a decoded manifest breaks, so the operator
// fixes them in one round instead of one per attempt.
type ValidationError struct {
	File     string // empty when the manifest did not come from a file
	Problems []Problem
}

func (e *ValidationError) Error() string { return formatProblems(e.File, e.Problems) }

// formatProblems writes one problem per line, each prefixed with the file so
// every line can be read (or grepped) on its own, compiler style.
func formatProblems(file string, ps []Problem) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('\n')
		}
		if file != "" {
			b.WriteString(file)
			b.WriteByte(':')
			if p.Line == 0 {
				b.WriteByte(' ')
			}
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Load reads and validates the package at path, which is either a directory
// holding blueprint.toml or the manifest file itself. Errors name the file
// as the caller spelled it, which is what the operator typed.
func Load(path string) (*Package, error) {
	file := path
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load blueprint: %w", err)
	}
	if fi.IsDir() {
		file = filepath.Join(path, ManifestFile)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("load blueprint: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("load blueprint: read %s: %w", file, err)
	}
	if len(data) > maxManifestBytes {
		return nil, fmt.Errorf("load blueprint: %s is larger than %d bytes", file, maxManifestBytes)
	}
	m, err := Parse(data, file)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, fmt.Errorf("load blueprint: %w", err)
	}
	dir := filepath.Dir(abs)
	if ps := checkArchives(m, dir); len(ps) > 0 {
		return nil, &ValidationError{File: file, Problems: ps}
	}
	return &Package{Manifest: *m, Dir: dir, File: abs}, nil
}

// checkArchives checks what only a package on disk can show: each container
// source's archive is a regular file inside the package directory, symlinks
// resolved, so `package validate` finds a missing one, not a deploy to an
// engine that happens to lack the image.
func checkArchives(m *Manifest, dir string) []Problem {
	var ps problems
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		root = dir
	}
	for i, s := range m.Sources {
		if s.Archive == "" {
			continue
		}
		f := fmt.Sprintf("sources[%d].archive", i)
		real, err := filepath.EvalSymlinks(filepath.Join(dir, s.Archive))
		if err != nil {
			ps.add(f, "%q: %v", s.Archive, errors.Unwrap(err))
			continue
		}
		if rel, err := filepath.Rel(root, real); err != nil || !filepath.IsLocal(rel) {
			ps.add(f, "%q leads outside the package directory", s.Archive)
			continue
		}
		if fi, err := os.Stat(real); err != nil || !fi.Mode().IsRegular() {
			ps.add(f, "%q is not a regular file", s.Archive)
		}
	}
	return ps
}

// Parse decodes a manifest, fills in defaults and validates it. file is used
// only in error messages. A *ParseError means the TOML could not be decoded;
// a *ValidationError lists the broken rules.
func Parse(data []byte, file string) (*Manifest, error) {
	var m Manifest
	// Decoded leniently: go-toml's DisallowUnknownFields matches keys
	// case-insensitively (it would take `Name = "x"` for name), so unknown
	// keys are found by tomlstrict, spelled exactly.
	decErr := toml.Unmarshal(data, &m)
	keys, err := tomlstrict.NewIndex(data)
	if err != nil {
		// Not TOML at all; go-toml's error has the position.
		if decErr == nil {
			decErr = err
		}
		return nil, &ParseError{File: file, Problems: decodeProblems(data, decErr)}
	}
	var ps []Problem
	for _, u := range keys.Unknown(manifestType, nil) {
		ps = append(ps, Problem{Line: u.Pos.Line, Column: u.Pos.Col, Message: u.Message()})
	}
	if decErr != nil {
		ps = append(ps, decodeProblems(data, decErr)...)
	}
	if len(ps) > 0 {
		sortProblems(ps)
		return nil, &ParseError{File: file, Problems: ps}
	}
	// Defaults are applied after decoding so that an explicit "0s" can still
	// be told apart from an absent key and refused.
	set, err := explicitDurations(data)
	if err != nil {
		return nil, &ParseError{File: file, Problems: decodeProblems(data, err)}
	}
	m.applyDefaults(set)
	if err := m.Validate(); err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			ve.File = file
			placeProblems(ve.Problems, keys)
		}
		return nil, err
	}
	return &m, nil
}

var manifestType = reflect.TypeFor[Manifest]()

// placeProblems gives validation problems the position of the key they
// name (or of its nearest written ancestor, so a missing key points at its
// section), as decode problems have, so an editor can jump to it. Fields
// inside arrays (sources[1].kind) are left without one: the index does not
// tell elements of an inline array apart, and a line pointing at the
// wrong element would mislead more than no line.
func placeProblems(ps []Problem, keys *tomlstrict.Index) {
	for i := range ps {
		if ps[i].Line != 0 || ps[i].Field == "" || strings.Contains(ps[i].Field, "[") {
			continue
		}
		pos := keys.Pos(ps[i].Field)
		ps[i].Line, ps[i].Column = pos.Line, pos.Col
	}
}

// sortProblems puts problems in file order, those without a place last, so
// an unknown key and a type mismatch read top to bottom.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}

// durationKeys are the manifest keys decoded through Duration.UnmarshalText.
// go-toml reports a failure there without a position when the TOML value is
// not a string, so Parse finds the position itself.
func durationKeys() [][]string {
	return [][]string{{"health", "interval"}, {"health", "timeout"}}
}

// durationsSet records which duration keys the manifest spelled out.
type durationsSet struct{ interval, timeout bool }

func explicitDurations(data []byte) (durationsSet, error) {
	// A second, lenient decode: the strict one has already vetted types, so
	// this only learns which keys were present.
	var v struct {
		Health *struct {
			Interval *string `toml:"interval"`
			Timeout  *string `toml:"timeout"`
		} `toml:"health"`
	}
	if err := toml.Unmarshal(data, &v); err != nil {
		return durationsSet{}, err
	}
	if v.Health == nil {
		return durationsSet{}, nil
	}
	return durationsSet{interval: v.Health.Interval != nil, timeout: v.Health.Timeout != nil}, nil
}

// decodeProblems turns go-toml's errors into positioned, user-facing problems.
func decodeProblems(data []byte, err error) []Problem {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		return []Problem{{
			Field: strings.Join(de.Key(), "."),
			Line:  line, Column: col,
			Message: humanizeDecodeMessage(strings.TrimPrefix(de.Error(), "toml: ")),
		}}
	}
	if line, col, key, ok := locateNonStringValue(data, durationKeys()); ok {
		return []Problem{{
			Field: strings.Join(key, "."),
			Line:  line, Column: col,
			Message: `expected a duration string like "10s"`,
		}}
	}
	return []Problem{{Message: strings.TrimPrefix(err.Error(), "toml: ")}}
}

var typeMismatchRE = regexp.MustCompile(`^cannot decode TOML (.+?) into (?:struct field \S+ of type )?(\S+)$`)

// humanizeDecodeMessage replaces go-toml's type-mismatch wording, which names
// Go struct fields, with the TOML-level expectation the operator can act on.
func humanizeDecodeMessage(msg string) string {
	m := typeMismatchRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	return fmt.Sprintf("expected %s, got %s", describeGoType(m[2]), m[1])
}

func describeGoType(t string) string {
	t = strings.TrimPrefix(t, "*")
	switch {
	case t == "string":
		return "a string"
	case t == "bool":
		return "a boolean"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	case strings.HasPrefix(t, "map["):
		return "a table"
	case t == "blueprint.Duration":
		return `a duration string like "10s"`
	case strings.HasPrefix(t, "blueprint."):
		return "a table"
	}
	return t
}

// locateNonStringValue finds the first value among keys that is not a TOML
// string, walking tables, dotted keys and inline tables.
func locateNonStringValue(data []byte, keys [][]string) (line, col int, key []string, ok bool) {
	var p unstable.Parser
	p.Reset(data)
	var table []string
	var walk func(prefix []string, kv *unstable.Node) bool
	walk = func(prefix []string, kv *unstable.Node) bool {
		path := slices.Clone(prefix)
		for it := kv.Key(); it.Next(); {
			path = append(path, string(it.Node().Data))
		}
		v := kv.Value()
		if v.Kind == unstable.InlineTable {
			for it := v.Children(); it.Next(); {
				if c := it.Node(); c.Kind == unstable.KeyValue && walk(path, c) {
					return true
				}
			}
			return false
		}
		for _, k := range keys {
			if slices.Equal(k, path) && v.Kind != unstable.String {
				s := p.Shape(v.Raw)
				line, col, key = s.Start.Line, s.Start.Column, path
				return true
			}
		}
		return false
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = table[:0]
			for it := e.Key(); it.Next(); {
				table = append(table, string(it.Node().Data))
			}
		case unstable.KeyValue:
			if walk(table, e) {
				return line, col, key, true
			}
		}
	}
	return 0, 0, nil, false
}

// Duration defaults for health checks, as documented in the manifest format.
const (
	DefaultHealthInterval = 10 * time.Second
	DefaultHealthTimeout  = 2 * time.Second
)

func (m *Manifest) applyDefaults(set durationsSet) {
	for i := range m.Ports {
		if m.Ports[i].Protocol == "" {
			m.Ports[i].Protocol = "tcp"
		}
	}
	for i := range m.Sources {
		for j := range m.Sources[i].Binaries {
			// The SDK writes digests in either case; one spelling keeps the
			// content-addressed cache to one file per binary.
			b := &m.Sources[i].Binaries[j]
			b.SHA256 = strings.ToLower(b.SHA256)
		}
	}
	if h := m.Health; h != nil {
		if !set.interval {
			h.Interval.Duration = DefaultHealthInterval
		}
		if !set.timeout {
			h.Timeout.Duration = DefaultHealthTimeout
		}
	}
}
