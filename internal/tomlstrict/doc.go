// Package tomlstrict checks a TOML document's keys against the Go type it
// decodes into, spelled exactly, and remembers where every key was written.
//
// It exists because go-toml's own strict mode (DisallowUnknownFields) is not
// strict enough and not cheap enough for bpm's files: it matches struct
// fields case-insensitively, so `Name = "x"` passes for a field tagged
// "name", and it builds each unknown-key message by rescanning the document,
// which is quadratic in a file full of typos. Callers therefore decode
// leniently with go-toml and ask this package which keys the type does not
// declare:
//
//	idx, err := tomlstrict.NewIndex(data) // err only for invalid TOML
//	for _, u := range idx.Unknown(reflect.TypeFor[Manifest](), nil) {
//		// u.Pos, u.Key(), u.Hint: `1:1: unknown key "Name" (did you mean "name"?)`
//	}
//
// The Index also answers "where was this key written?" (Index.Pos), so a
// later message about a decoded value (a missing environment variable, a
// failed validation) can still point at a line.
//
// Field names follow go-toml's rules: the toml tag's name, else the Go field
// name; `toml:"-"` and unexported fields are not keys; embedded structs
// without a tag name are flattened into their parent.
package tomlstrict
