package blueprint

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// FuzzParse feeds arbitrary bytes to the manifest parser. It must never
// panic, must fail only with its own error types, and whatever it accepts
// must survive a round trip through TOML unchanged and still validate.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.toml")
	seeds = append(seeds, "../../examples/echo/blueprint.toml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The fuzzer has no notion of a hang; turn one into a failure that
		// records the input.
		type result struct {
			m   *Manifest
			err error
		}
		done := make(chan result, 1)
		go func() {
			m, err := Parse(data, "blueprint.toml")
			done <- result{m, err}
		}()
		var m *Manifest
		var err error
		select {
		case r := <-done:
			m, err = r.m, r.err
		case <-time.After(5 * time.Second):
			t.Fatalf("Parse did not return within 5s on %q", data)
		}
		if err != nil {
			var pe *ParseError
			var ve *ValidationError
			if !errors.As(err, &pe) && !errors.As(err, &ve) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if m != nil {
				t.Fatal("a manifest returned with an error")
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted manifest does not validate: %v", err)
		}
		out, err := toml.Marshal(m)
		if err != nil {
			t.Fatalf("marshal accepted manifest: %v", err)
		}
		m2, err := Parse(out, "roundtrip.toml")
		if err != nil {
			t.Fatalf("re-parse of marshalled manifest: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalize(*m), normalize(*m2)) {
			t.Fatalf("round trip changed the manifest\nbefore %+v\nafter  %+v\n%s", *m, *m2, out)
		}
	})
}

// normalize erases differences a TOML round trip may legitimately make
// (nil versus empty slices and maps).
func normalize(m Manifest) Manifest {
	if len(m.Env) == 0 {
		m.Env = nil
	}
	if len(m.Ports) == 0 {
		m.Ports = nil
	}
	m.Sources = append([]Source(nil), m.Sources...)
	for i := range m.Sources {
		s := &m.Sources[i]
		if len(s.Binaries) == 0 {
			s.Binaries = nil
		}
		if len(s.Args) == 0 {
			s.Args = nil
		}
	}
	return m
}
