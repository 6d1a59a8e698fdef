package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/bpm-project/bpm/internal/keystore"
	"github.com/bpm-project/bpm/internal/tomlstrict"
)

// KeystorePrefix marks a secret field's value as a keystore reference.
const KeystorePrefix = "keystore:"

var secretType = reflect.TypeFor[Secret]()

// fieldTags are the loader's struct tags that apply to a value.
type fieldTags struct {
	path   bool // ~ expansion and resolution against BaseDir
	secret bool // keystore:NAME allowed; redacted in output
}

func tagsOf(f reflect.StructField) fieldTags {
	return fieldTags{
		path:   f.Tag.Get("path") == "true",
		secret: f.Tag.Get("secret") == "true" || f.Type == secretType,
	}
}

// expandAll expands ${VAR}, ~ and keystore:NAME in every string of cfg.
func (l *loader) expandAll(cfg *Config) {
	l.walkStrings(reflect.ValueOf(&cfg.Manager).Elem(), "manager", fieldTags{}, cfg)
	l.walkStrings(reflect.ValueOf(&cfg.ServiceEnv).Elem(), "service_env", fieldTags{}, cfg)
	l.walkStrings(reflect.ValueOf(&cfg.Hub).Elem(), "hub", fieldTags{}, cfg)
	l.walkStrings(reflect.ValueOf(&cfg.Proxy).Elem(), "proxy", fieldTags{}, cfg)
	for _, name := range cfg.RemoteNames() {
		r := cfg.Remotes[name]
		l.walkStrings(reflect.ValueOf(r.Settings), tomlstrict.DisplayKey([]string{"remote", name}), fieldTags{}, cfg)
	}
}

// walkStrings visits every string reachable from v (struct fields by their
// toml names, slice elements, map values) and rewrites it in place.
func (l *loader) walkStrings(v reflect.Value, key string, tags fieldTags, cfg *Config) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			l.walkStrings(v.Elem(), key, tags, cfg)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if tomlstrict.IsFlattened(f) {
				l.walkStrings(v.Field(i), key, tags, cfg)
				continue
			}
			name, ok := tomlstrict.FieldName(f)
			if !ok {
				continue
			}
			l.walkStrings(v.Field(i), joinField(key, tomlstrict.DisplayKey([]string{name})), tagsOf(f), cfg)
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			l.walkStrings(v.Index(i), key+"["+strconv.Itoa(i)+"]", tags, cfg)
		}
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return
		}
		iter := v.MapRange()
		type kv struct{ k, v reflect.Value }
		var updates []kv
		for iter.Next() {
			// Map values are not addressable: work on a copy, write it back.
			cp := reflect.New(v.Type().Elem()).Elem()
			cp.Set(iter.Value())
			l.walkStrings(cp, joinField(key, tomlstrict.DisplayKey([]string{iter.Key().String()})), tags, cfg)
			updates = append(updates, kv{iter.Key(), cp})
		}
		for _, u := range updates {
			v.SetMapIndex(u.k, u.v)
		}
	case reflect.String:
		if !v.CanSet() {
			return
		}
		s, ok := l.expandString(v.String(), key, tags)
		if !ok {
			return
		}
		if tags.secret && s != "" {
			cfg.secrets.values = append(cfg.secrets.values, s)
		}
		v.SetString(s)
	}
}

// expandString applies, in order, ${VAR} expansion, keystore resolution for
// secrets, and ~ and BaseDir for paths. The keystore prefix is looked at
// before path resolution, so keystore:NAME in a path field is refused like
// in any other non-secret field rather than becoming the relative path
// "<config dir>/keystore:NAME". Messages name the key and never the value
// of a secret.
func (l *loader) expandString(s, key string, tags fieldTags) (string, bool) {
	at := l.keys.Pos(key)
	out, err := expandEnv(s, l.opts.getenv)
	if err != nil {
		l.probs.add(at, "%s: %s", key, err)
		return "", false
	}
	if name, ok := strings.CutPrefix(out, KeystorePrefix); ok {
		if !tags.secret {
			l.probs.add(at, "%s: keystore references are only allowed in secret fields", key)
			return "", false
		}
		if l.opts.Keystore == nil {
			l.probs.add(at, "%s: refers to keystore entry %q but no keystore is available (set BPM_KEYSTORE_PASSPHRASE or BPM_KEYSTORE_KEY_FILE)", key, name)
			return "", false
		}
		v, err := l.opts.Keystore.Get(name)
		if errors.Is(err, keystore.ErrNotFound) {
			l.probs.add(at, "%s: keystore has no entry %q (add it with: bpm keys set %s)", key, name, name)
			return "", false
		}
		if err != nil {
			l.probs.add(at, "%s: keystore entry %q: %s", key, name, err)
			return "", false
		}
		// The entry is the value itself, not a path to resolve.
		return v, true
	}
	if tags.path && out != "" {
		p, err := l.expandPath(out)
		if err != nil {
			l.probs.add(at, "%s: %s", key, err)
			return "", false
		}
		out = p
	}
	return out, true
}

func (l *loader) expandPath(p string) (string, error) {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := l.opts.home()
		if err != nil {
			return "", fmt.Errorf("cannot expand ~: %w", err)
		}
		p = filepath.Join(home, p[1:])
	} else if strings.HasPrefix(p, "~") {
		return "", errors.New("~user paths are not supported; write the full path")
	}
	if !filepath.IsAbs(p) && l.opts.BaseDir != "" {
		p = filepath.Join(l.opts.BaseDir, p)
	}
	return filepath.Clean(p), nil
}

// expandEnv replaces ${VAR} and ${VAR:-default} and turns $$ into $. A $
// followed by anything else is kept, so values like passwords containing $
// need no escaping unless they contain ${ or $$. ${VAR:-default} uses the
// default when VAR is unset or empty, as the shell does; ${VAR} with VAR set
// to the empty string is the empty string.
func expandEnv(s string, getenv func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", errors.New("unterminated ${ (write $$ for a literal dollar)")
			}
			expr := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(expr, ":-")
			if !validEnvName(name) {
				// The text is not quoted: in a secret field it might be
				// a mistyped secret.
				return "", errors.New("invalid ${...} reference: a variable name is letters, digits and _, not starting with a digit")
			}
			val, set := getenv(name)
			switch {
			case hasDef && val == "":
				val = def
			case !set:
				return "", fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(val)
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
