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
	"github.com/bpm-project/bpm/internal/tomlstrict"
)

// position is where a problem is, in the config text.
type position = tomlstrict.Position

// remoteNameRE keeps names usable in labels, DNS names and file names.
var remoteNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// LocalRemote is the implicit default remote; it cannot be configured.
const LocalRemote = "local"

type loader struct {
	file  string
	data  []byte
	opts  LoadOptions
	probs problems
	keys  *tomlstrict.Index
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
	// The lenient decode above has vetted the syntax, so the index cannot
	// fail; a failure would mean the two parsers disagree.
	keys, err := tomlstrict.NewIndex(l.data)
	if err != nil {
		l.probs.add(position{}, "%s", err)
		return nil, l.probs.err()
	}
	l.keys = keys
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
		Hub:        doc.Field(3).Interface().(Hub),
		Proxy:      doc.Field(4).Interface().(Proxy),
		Cost:       doc.Field(5).Interface().(Cost),
		Remotes:    map[string]*Remote{},
		secrets:    &secretSet{},
	}
	for i, r := range remotes {
		cfg.Remotes[r.name] = &Remote{
			Name:     r.name,
			Type:     r.typ,
			Settings: doc.Field(2).Field(i).Interface(),
			Line:     l.keys.Pos(tomlstrict.DisplayKey([]string{"remote", r.name})).Line,
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
		l.probs.add(l.keys.Pos("remote"), "remote: must be a table of [remote.NAME] sections")
		return nil, false
	}
	names := make([]string, 0, len(sections))
	for n := range sections {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		at := l.keys.Pos(tomlstrict.DisplayKey([]string{"remote", name}))
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
	typeAt := l.keys.Pos(tomlstrict.DisplayKey([]string{"remote", spec.name, "type"}))
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
		// Appended last so the fields above keep the indices load uses.
		{Name: "Hub", Type: reflect.TypeFor[Hub](), Tag: `toml:"hub"`},
		{Name: "Proxy", Type: reflect.TypeFor[Proxy](), Tag: `toml:"proxy"`},
		{Name: "Cost", Type: reflect.TypeFor[Cost](), Tag: `toml:"cost"`},
	})
}

// checkKeys reports every key the document type does not declare, spelled
// exactly as declared. Keys of a remote are named relative to the remote,
// which is how its provider's documentation lists them.
func (l *loader) checkKeys(docType reflect.Type) {
	for _, u := range l.keys.Unknown(docType, remoteTypeKey) {
		msg := u.Message()
		if len(u.Path) >= 3 && u.Path[0] == "remote" {
			key := tomlstrict.DisplayKey(u.Path[2:])
			msg = fmt.Sprintf("remote %q: %s", u.Path[1], tomlstrict.UnknownMessage(key, u.Hint))
		}
		l.probs.add(u.Pos, "%s", msg)
	}
}

// remoteTypeKey accepts "type" in every remote section, whether or not the
// provider's struct declares it.
func remoteTypeKey(path []string) bool {
	return len(path) == 3 && path[0] == "remote" && path[2] == "type"
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
			if k, ok := l.keys.KeyAt(position{Line: row, Col: col}); ok {
				key = k
			}
		}
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if alreadyDefinedRE.MatchString(msg) {
			msg = "defined more than once"
		} else {
			msg = l.friendlyTypeError(key, msg)
		}
		l.probs.add(position{Line: row, Col: col}, "%s", keyedMessage(key, msg))
		return
	}
	l.probs.add(position{}, "%s", strings.TrimPrefix(err.Error(), "toml: "))
}

var alreadyDefinedRE = regexp.MustCompile(`^key .* is already defined$`)

func keyedMessage(key []string, msg string) string {
	if len(key) == 0 {
		return msg
	}
	return tomlstrict.DisplayKey(key) + ": " + msg
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
			ft, ok := tomlstrict.Field(t, k)
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
