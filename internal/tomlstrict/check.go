package tomlstrict

import (
	"fmt"
	"reflect"
	"strings"
)

// UnknownKey is a key the target type does not declare.
type UnknownKey struct {
	// Path is the key up to and including its first unknown part, spelled
	// as written, with Elem for array elements.
	Path []string
	Pos  Position
	// Hint is a declared name close to the unknown part (equal ignoring
	// case, or within two edits), or "".
	Hint string
}

// Key is the unknown key as a message shows it.
func (u UnknownKey) Key() string { return DisplayKey(u.Path) }

// Message is the standard wording: `unknown key "a.b" (did you mean "c"?)`.
func (u UnknownKey) Message() string { return UnknownMessage(u.Key(), u.Hint) }

// UnknownMessage words an unknown key and its hint; callers that show the
// key relative to a section (config's remotes) build the key themselves but
// keep the wording.
func UnknownMessage(key, hint string) string {
	msg := fmt.Sprintf("unknown key %q", key)
	if hint != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", hint)
	}
	return msg
}

// Unknown reports every key in the document that t does not declare,
// spelled exactly, in document order. A key is reported once, at its first
// occurrence, however often it is repeated (in every [[table]] element, or
// as the prefix of several dotted keys); keys below an unknown key are not
// reported on their own.
//
// allow, if not nil, accepts keys the type does not describe: it is called
// with each path prefix before the prefix's last part is looked up, and a
// true result accepts that key and everything below it. config uses it for
// the "type" key every remote section has, whatever its provider declares.
//
// Keys below a value the type cannot hold as a table (a key under a string,
// an element of a non-array) are not reported: decoding reports them as
// type mismatches, which says more.
func (idx *Index) Unknown(t reflect.Type, allow func(path []string) bool) []UnknownKey {
	var out []UnknownKey
	reported := map[string]bool{}
	for _, k := range idx.keys {
		bad, hint := unknownPart(t, k.Path, allow)
		if bad < 0 {
			continue
		}
		prefix := k.Path[:bad+1]
		id := strings.Join(prefix, "\x00")
		if reported[id] {
			continue
		}
		reported[id] = true
		out = append(out, UnknownKey{Path: prefix, Pos: k.Pos, Hint: hint})
	}
	return out
}

// unknownPart walks path through t and returns the index of the first part
// t does not declare (-1 if all are known) and a close declared name.
func unknownPart(t reflect.Type, path []string, allow func([]string) bool) (int, string) {
	for i, seg := range path {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if allow != nil && allow(path[:i+1]) {
			return -1, ""
		}
		switch t.Kind() {
		case reflect.Interface:
			return -1, ""
		case reflect.Map:
			t = t.Elem()
		case reflect.Slice, reflect.Array:
			t = t.Elem()
			if seg == Elem {
				continue
			}
			// A table key directly under an array type: go-toml decodes
			// a table into the elements' type, so check it there.
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			if t.Kind() != reflect.Struct {
				return -1, ""
			}
			fallthrough
		case reflect.Struct:
			if seg == Elem {
				return -1, "" // an array where a table belongs
			}
			ft, ok := Field(t, seg)
			if !ok {
				return i, suggest(seg, FieldNames(t))
			}
			t = ft
		default:
			return -1, ""
		}
	}
	return -1, ""
}

// FieldName is the key a struct field decodes from, and whether it decodes
// at all.
func FieldName(f reflect.StructField) (name string, ok bool) {
	if !f.IsExported() {
		return "", false
	}
	tag := f.Tag.Get("toml")
	if tag == "-" {
		return "", false
	}
	name, _, _ = strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	return name, true
}

// IsFlattened reports whether f is an embedded struct whose fields go-toml
// treats as its parent's.
func IsFlattened(f reflect.StructField) bool {
	if !f.Anonymous {
		return false
	}
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	t := f.Type
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return name == "" && t.Kind() == reflect.Struct
}

// Field returns the type of the field of struct type t that key decodes
// into, matching the key exactly.
func Field(t reflect.Type, key string) (reflect.Type, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if IsFlattened(f) {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if r, ok := Field(ft, key); ok {
				return r, true
			}
			continue
		}
		if name, ok := FieldName(f); ok && name == key {
			return f.Type, true
		}
	}
	return nil, false
}

// FieldNames lists the keys struct type t declares, flattened embedded
// structs included.
func FieldNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if IsFlattened(f) {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			out = append(out, FieldNames(ft)...)
			continue
		}
		if name, ok := FieldName(f); ok {
			out = append(out, name)
		}
	}
	return out
}

// suggest returns the known name closest to key when it is close enough to
// be a typo: equal ignoring case, or within two edits.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return k
		}
		if d := editDistance(strings.ToLower(key), k); d < bestD && d < len(k) {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99 // typos of long keys are not worth quadratic work
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
