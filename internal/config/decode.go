package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/bpm-project/bpm/internal/provider"
)

// remoteNameRE keeps names usable in labels, DNS names and file names.
var remoteNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// LocalRemote is the implicit default remote; it cannot be configured.
const LocalRemote = "local"

type loader struct {
	file  string
	data  []byte
	opts  LoadOptions
	probs problems
	keys  *keyIndex
	doc   reflect.Type // the struct the file decodes into
}

// remoteSpec is what pass 1 learned about one [remote.NAME] section.
type remoteSpec struct {
	name string
	typ  string
	info provider.Info
	ok   bool // type known and usable; only then is the section decoded typed
}

func (l *loader) load() (*Config, error) {
	l.probs.file = l.file

	// Pass 1: syntax, and each remote's type, decoding leniently.
	var raw map[string]any
	if err := toml.Unmarshal(l.data, &raw); err != nil {
		l.addDecodeError(err)
		return nil, l.probs.err()
	}
	l.keys = indexKeys(l.data)
	remotes, remoteOK := l.remoteSpecs(raw)

	// Pass 2: decode the whole document into a struct built for it, with
	// each remote typed by its provider's config struct.
	docType := documentType(remotes, remoteOK)
	l.doc = docType
	doc := reflect.New(docType).Elem()
	if remoteOK {
		rv := doc.Field(2)
		for i, r := range remotes {
			if r.ok {
				rv.Field(i).Set(reflect.ValueOf(r.info.NewConfig()))
			}
		}
	}
	// Unknown keys are found by our own walk over every key in the file,
	// not go-toml's DisallowUnknownFields: go-toml matches field names
	// case-insensitively (so "Namespace" would pass), and it builds a
	// quoted-context message per unknown key by rescanning the document,
	// which is quadratic in a file full of typos.
	l.checkKeys(docType)
	if err := toml.NewDecoder(bytes.NewReader(l.data)).Decode(doc.Addr().Interface()); err != nil {
		l.addDecodeError(err)
	}
	if !l.probs.empty() {
		return nil, l.probs.err()
	}

	cfg := &Config{
		File:       l.file,
		Manager:    doc.Field(0).Interface().(Manager),
		ServiceEnv: doc.Field(1).Interface().(ServiceEnv),
		Remotes:    map[string]*Remote{},
		secrets:    &secretSet{},
	}
	for i, r := range remotes {
		cfg.Remotes[r.name] = &Remote{
			Name:     r.name,
			Type:     r.typ,
			Settings: doc.Field(2).Field(i).Interface(),
			Line:     l.keys.pos(displayKey([]string{"remote", r.name})).Line,
		}
	}

	l.expandAll(cfg)
	if !l.probs.empty() {
		return nil, l.probs.err()
	}
	l.applyDefaults(cfg)
	if !l.probs.empty() {
		return nil, l.probs.err()
	}
	l.validate(cfg)
	if !l.probs.empty() {
		return nil, l.probs.err()
	}
	return cfg, nil
}

// remoteSpecs checks remote names and types. ok is false when [remote] is
// not a table at all.
func (l *loader) remoteSpecs(raw map[string]any) (specs []remoteSpec, ok bool) {
	rv, present := raw["remote"]
	if !present {
		return nil, true
	}
	sections, isTable := rv.(map[string]any)
	if !isTable {
		l.probs.add(l.keys.pos("remote"), "remote: must be a table of [remote.NAME] sections")
		return nil, false
	}
	names := make([]string, 0, len(sections))
	for n := range sections {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		at := l.keys.pos(displayKey([]string{"remote", name}))
		spec := remoteSpec{name: name}
		section, isTable := sections[name].(map[string]any)
		switch {
		case name == LocalRemote:
			l.probs.add(at, "remote %q: the name is reserved for the implicit local remote; choose another name", name)
		case !remoteNameRE.MatchString(name):
			l.probs.add(at, "remote %q: invalid name: use 1-63 of a-z 0-9 _ - starting with a letter or digit", name)
		case !isTable:
			l.probs.add(at, "remote %q: must be a table", name)
		default:
			spec.ok = l.remoteType(&spec, section, at)
		}
		specs = append(specs, spec)
	}
	return specs, true
}

func (l *loader) remoteType(spec *remoteSpec, section map[string]any, at position) bool {
	known := remoteTypes()
	tv, present := section["type"]
	if !present {
		l.probs.add(at, "remote %q: missing key \"type\" (one of: %s)", spec.name, strings.Join(known, ", "))
		return false
	}
	typeAt := l.keys.pos(displayKey([]string{"remote", spec.name, "type"}))
	typ, isString := tv.(string)
	if !isString {
		l.probs.add(typeAt, "remote %q: \"type\" must be a string (one of: %s)", spec.name, strings.Join(known, ", "))
		return false
	}
	spec.typ = typ
	info, found := provider.Lookup(typ)
	switch {
	case !found:
		if len(known) == 0 {
			l.probs.add(typeAt, "remote %q: unknown type %q: this build has no remote providers (built with -tags bpm_noremote)", spec.name, typ)
		} else {
			l.probs.add(typeAt, "remote %q: unknown type %q (known: %s)", spec.name, typ, strings.Join(known, ", "))
		}
		return false
	case !info.Remote:
		l.probs.add(typeAt, "remote %q: type %q is not a remote provider (known: %s)", spec.name, typ, strings.Join(known, ", "))
		return false
	case info.NewConfig == nil:
		// A provider without settings still accepts "type" and nothing else.
		info.NewConfig = func() any { return &struct{}{} }
	}
	spec.info = info
	return true
}

// remoteTypes lists the registered provider types that can back a remote.
func remoteTypes() []string {
	var out []string
	for _, t := range provider.Types() {
		if info, ok := provider.Lookup(t); ok && info.Remote {
			out = append(out, t)
		}
	}
	return out
}

var anyType = reflect.TypeFor[any]()

// documentType builds the struct the whole file decodes into. Remotes whose
// type is unusable decode into `any`, so their problems are reported once
// (by remoteSpecs) and the rest of the file is still checked.
func documentType(remotes []remoteSpec, remoteOK bool) reflect.Type {
	remoteType := anyType
	if remoteOK {
		fields := make([]reflect.StructField, len(remotes))
		for i, r := range remotes {
			t := anyType
			if r.ok {
				t = reflect.TypeOf(r.info.NewConfig())
			}
			fields[i] = reflect.StructField{
				Name: "R" + strconv.Itoa(i),
				Type: t,
				Tag:  reflect.StructTag(`toml:` + strconv.Quote(r.name)),
			}
		}
		remoteType = reflect.StructOf(fields)
	}
	return reflect.StructOf([]reflect.StructField{
		{Name: "Manager", Type: reflect.TypeFor[Manager](), Tag: `toml:"manager"`},
		{Name: "ServiceEnv", Type: reflect.TypeFor[ServiceEnv](), Tag: `toml:"service_env"`},
		{Name: "Remote", Type: remoteType, Tag: `toml:"remote"`},
	})
}

// checkKeys reports every key the document type does not declare, spelled
// exactly as declared.
func (l *loader) checkKeys(docType reflect.Type) {
	reported := map[string]bool{}
	for _, e := range l.keys.entries {
		bad, hint := unknownKey(docType, e.path)
		if bad < 0 {
			continue
		}
		prefix := e.path[:bad+1]
		k := strings.Join(prefix, "\x00")
		if reported[k] {
			continue
		}
		reported[k] = true
		var msg string
		if len(prefix) >= 3 && prefix[0] == "remote" {
			msg = fmt.Sprintf("remote %q: unknown key %q", prefix[1], lookupKey(prefix[2:]))
		} else {
			msg = fmt.Sprintf("unknown key %q", lookupKey(prefix))
		}
		if hint != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", hint)
		}
		l.probs.add(e.pos, "%s", msg)
	}
}

// unknownKey walks path through t and returns the index of the first
// segment t does not declare (-1 if all are known) and a close known name.
func unknownKey(t reflect.Type, path []string) (int, string) {
	for i, seg := range path {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		// Every remote section has "type", whether or not the provider's
		// struct declares it.
		if i == 2 && path[0] == "remote" && seg == "type" {
			return -1, ""
		}
		switch t.Kind() {
		case reflect.Interface:
			return -1, ""
		case reflect.Map:
			t = t.Elem()
		case reflect.Slice, reflect.Array:
			t = t.Elem()
			if seg == "[]" {
				continue
			}
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			fallthrough
		case reflect.Struct:
			if t.Kind() != reflect.Struct {
				return -1, ""
			}
			ft, ok := fieldType(t, seg)
			if !ok {
				return i, suggest(seg, tomlNames(t))
			}
			t = ft
		default:
			// A key below a scalar is a type mismatch, which go-toml reports.
			return -1, ""
		}
	}
	return -1, ""
}

// tomlName is the key a struct field decodes from, and whether it decodes at
// all. Anonymous struct fields without a name are flattened, as go-toml does.
func tomlName(f reflect.StructField) (name string, ok bool) {
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

func isFlattened(f reflect.StructField) bool {
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

func fieldType(t reflect.Type, key string) (reflect.Type, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if isFlattened(f) {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if r, ok := fieldType(ft, key); ok {
				return r, true
			}
			continue
		}
		if name, ok := tomlName(f); ok && name == key {
			return f.Type, true
		}
	}
	return nil, false
}

func tomlNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if isFlattened(f) {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			out = append(out, tomlNames(ft)...)
			continue
		}
		if name, ok := tomlName(f); ok {
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

// addDecodeError turns a go-toml error into problems with positions. The
// human-readable context go-toml offers is not used: it quotes the source
// line, which may hold a secret.
func (l *loader) addDecodeError(err error) {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		key := de.Key()
		// go-toml gives some keys relative to their table; the index
		// knows the full path of the key written at this position.
		if l.keys != nil {
			for _, e := range l.keys.entries {
				if e.pos == (position{row, col}) {
					key = e.path
					break
				}
			}
		}
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if alreadyDefinedRE.MatchString(msg) {
			msg = "defined more than once"
		} else {
			msg = l.friendlyTypeError(key, msg)
		}
		l.probs.add(position{row, col}, "%s", keyedMessage(key, msg))
		return
	}
	l.probs.add(position{}, "%s", strings.TrimPrefix(err.Error(), "toml: "))
}

var alreadyDefinedRE = regexp.MustCompile(`^key .* is already defined$`)

func keyedMessage(key []string, msg string) string {
	if len(key) == 0 {
		return msg
	}
	return lookupKey(key) + ": " + msg
}

var tomlKindRE = regexp.MustCompile(`cannot decode TOML ([a-z ]+?) into`)

// friendlyTypeError rewrites go-toml's type mismatch messages, which name Go
// types ("struct field config.Resources.MaxInstances of type int"), into
// the operator's terms ("expected an integer, found a string").
func (l *loader) friendlyTypeError(key []string, msg string) string {
	if l.doc == nil || len(key) == 0 {
		return msg
	}
	t := l.doc
	for _, k := range key {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			ft, ok := fieldType(t, k)
			if !ok {
				return msg
			}
			t = ft
		case reflect.Map, reflect.Slice, reflect.Array:
			t = t.Elem()
		default:
			return msg
		}
	}
	if m := tomlKindRE.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("expected %s, found %s", describeType(t), withArticle(m[1]))
	}
	if strings.Contains(msg, "cannot be stored in") {
		return "integer out of range"
	}
	return msg
}

func describeType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(describeType(t.Elem()), "a "), "an ") + "s"
	case reflect.Map, reflect.Struct:
		return "a table"
	}
	return "a different type"
}

func withArticle(kind string) string {
	if strings.IndexByte("aeiou", kind[0]) >= 0 {
		return "an " + kind
	}
	return "a " + kind
}
