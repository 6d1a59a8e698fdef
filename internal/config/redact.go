package config

import (
	"reflect"
	"strings"

	"github.com/bpm-project/bpm/internal/tomlstrict"
)

// Redacted returns cfg as nested maps keyed by TOML key, for `bpm config
// show` to print in any format. Every secret field that is set reads
// REDACTED (an unset one reads "", so the operator can still tell), and any
// other string that contains a secret's value, say a token pasted into an
// endpoint URL through the same ${VAR}, has that part replaced too.
func Redacted(cfg *Config) map[string]any {
	remotes := map[string]any{}
	for _, name := range cfg.RemoteNames() {
		r := cfg.Remotes[name]
		m, _ := toPrintable(reflect.ValueOf(r.Settings), fieldTags{}).(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		m["type"] = r.Type
		remotes[name] = m
	}
	out := map[string]any{
		"manager":     toPrintable(reflect.ValueOf(cfg.Manager), fieldTags{}),
		"service_env": toPrintable(reflect.ValueOf(cfg.ServiceEnv), fieldTags{}),
		"hub":         toPrintable(reflect.ValueOf(cfg.Hub), fieldTags{}),
		"proxy":       toPrintable(reflect.ValueOf(cfg.Proxy), fieldTags{}),
		"cost":        toPrintable(reflect.ValueOf(cfg.Cost), fieldTags{}),
	}
	if len(remotes) > 0 {
		out["remote"] = remotes
	}
	var secrets []string
	if cfg.secrets != nil {
		secrets = cfg.secrets.values
	}
	return scrub(out, secrets).(map[string]any)
}

func toPrintable(v reflect.Value, tags fieldTags) any {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return toPrintable(v.Elem(), tags)
	case reflect.Struct:
		m := map[string]any{}
		addStructFields(m, v)
		return m
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return []any{}
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = toPrintable(v.Index(i), tags)
		}
		return out
	case reflect.Map:
		m := map[string]any{}
		if v.Type().Key().Kind() != reflect.String {
			return m
		}
		iter := v.MapRange()
		for iter.Next() {
			m[iter.Key().String()] = toPrintable(iter.Value(), tags)
		}
		return m
	case reflect.String:
		if tags.secret || v.Type() == secretType {
			if v.String() == "" {
				return ""
			}
			return RedactedText
		}
		return v.String()
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint()
	case reflect.Float32, reflect.Float64:
		return v.Float()
	case reflect.Invalid:
		return nil
	}
	if tags.secret {
		return RedactedText
	}
	// A kind the config structs do not use today; print its type, never its
	// contents, so a future field cannot leak through here.
	return "<" + v.Type().String() + ">"
}

func addStructFields(m map[string]any, v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tomlstrict.IsFlattened(f) {
			fv := v.Field(i)
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					continue
				}
				fv = fv.Elem()
			}
			addStructFields(m, fv)
			continue
		}
		name, ok := tomlstrict.FieldName(f)
		if !ok {
			continue
		}
		m[name] = toPrintable(v.Field(i), tagsOf(f))
	}
}

// scrub replaces every occurrence of a secret value in the strings of v.
// Secrets shorter than minScrub are only replaced where they are the whole
// value: replacing a two-letter secret inside every string would garble the
// output and tell a reader the secret's letters anyway.
func scrub(v any, secrets []string) any {
	const minScrub = 4
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = scrub(e, secrets)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = scrub(e, secrets)
		}
		return x
	case string:
		for _, s := range secrets {
			if x == s {
				return RedactedText
			}
			if len(s) >= minScrub {
				x = strings.ReplaceAll(x, s, RedactedText)
			}
		}
		return x
	}
	return v
}
