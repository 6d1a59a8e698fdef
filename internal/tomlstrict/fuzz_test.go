package tomlstrict

import (
	"bytes"
	"reflect"
	"slices"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// FuzzUnknown checks the walker against go-toml on arbitrary documents: it
// must never panic, must accept everything go-toml can parse, must see every
// top-level key, and must be at least as strict as go-toml's own
// DisallowUnknownFields (which matches case-insensitively).
func FuzzUnknown(f *testing.F) {
	for _, s := range []string{
		"name = \"x\"\n[server]\nhost = \"h\"\ntls.cert = \"c\"\n",
		"Name = 1\n[[items]]\nid = 1\n[[items.sub]]\nvalue = \"v\"\n",
		"items = [{ id = 1, sub = [{ VALUE = \"v\" }] }]\n",
		"\"quoted key\" = 1\n[labels]\n'x.y' = \"z\"\n[Groups.a]\nkind = \"k\"\n",
		"a.b.c = 1\n[extra.x]\ny = [[1], [{ z = 2 }]]\n",
		"flat = \"f\"\n[named]\nFlat = 1\n[[ptrs]]\nkind = \"k\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		idx, idxErr := NewIndex(data)
		var raw map[string]any
		if err := toml.Unmarshal(data, &raw); err != nil {
			if idxErr == nil {
				// A document go-toml rejects on meaning (a key defined
				// twice) still has an index; it must not panic.
				idx.Unknown(testDocType, nil)
			}
			return
		}
		if idxErr != nil {
			t.Fatalf("go-toml parses the document but NewIndex fails: %v", idxErr)
		}
		lines := bytes.Count(data, []byte("\n")) + 1

		// Against an empty struct, every top-level key is unknown, once.
		var tops []string
		for _, u := range idx.Unknown(reflect.TypeFor[struct{}](), nil) {
			if len(u.Path) != 1 {
				t.Fatalf("unknown key %q below an unknown key", u.Path)
			}
			if u.Pos.Line < 1 || u.Pos.Line > lines || u.Pos.Col < 1 {
				t.Fatalf("unknown key %q at %v, outside the document", u.Path, u.Pos)
			}
			tops = append(tops, u.Path[0])
		}
		var want []string
		for k := range raw {
			want = append(want, k)
		}
		slices.Sort(tops)
		slices.Sort(want)
		if !slices.Equal(tops, want) {
			t.Fatalf("top-level keys %q, go-toml has %q", tops, want)
		}
		if u := idx.Unknown(reflect.TypeFor[map[string]any](), nil); len(u) != 0 {
			t.Fatalf("a map takes any key, got %v", u)
		}

		unknown := idx.Unknown(testDocType, nil)
		var lenient testDoc
		if len(unknown) > 0 || toml.Unmarshal(data, &lenient) != nil {
			return
		}
		var strict testDoc
		dec := toml.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&strict); err != nil {
			t.Fatalf("no unknown keys found, but go-toml's strict mode says: %v", err)
		}
	})
}
