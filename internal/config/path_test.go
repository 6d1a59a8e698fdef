package config

import "testing"

func TestDefaultPathOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		home string
		want string
		err  bool
	}{
		{"BPM_CONFIG_DIR wins", map[string]string{"BPM_CONFIG_DIR": "/cfg", "XDG_CONFIG_HOME": "/xdg"}, "/home/op", "/cfg/config.toml", false},
		{"then XDG_CONFIG_HOME", map[string]string{"XDG_CONFIG_HOME": "/xdg"}, "/home/op", "/xdg/bpm/config.toml", false},
		{"relative XDG ignored", map[string]string{"XDG_CONFIG_HOME": "xdg"}, "/home/op", "/home/op/.config/bpm/config.toml", false},
		{"empty BPM_CONFIG_DIR ignored", map[string]string{"BPM_CONFIG_DIR": ""}, "/home/op", "/home/op/.config/bpm/config.toml", false},
		{"then home", nil, "/home/op", "/home/op/.config/bpm/config.toml", false},
		{"HOME from the environment", map[string]string{"HOME": "/h"}, "", "/h/.config/bpm/config.toml", false},
		{"no home", nil, "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := LoadOptions{Home: tc.home, Getenv: func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }}
			got, err := defaultPath(opts)
			if tc.err {
				if err == nil {
					t.Errorf("got %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestParseQuantity(t *testing.T) {
	for _, tc := range []struct {
		in     string
		millis int64
		bytes  int64
		bad    bool
	}{
		{in: "4", millis: 4000, bytes: 4},
		{in: "500m", millis: 500, bytes: 1},
		{in: "0.5", millis: 500, bytes: 1},
		{in: "8Gi", bytes: 8 << 30},
		{in: "512Mi", bytes: 512 << 20},
		{in: "1G", bytes: 1e9},
		{in: "1e9", bytes: 1e9},
		{in: "1E", bytes: 1e18},
		{in: "", bad: true},
		{in: "-1", bad: true},
		{in: "8GB", bad: true},
		{in: "8 Gi", bad: true},
		{in: "Gi", bad: true},
		{in: "1e99", bad: true},
	} {
		q, err := ParseQuantity(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q accepted as %v", tc.in, q)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if tc.millis != 0 && q.CPUMillis() != tc.millis {
			t.Errorf("%q: CPUMillis = %d, want %d", tc.in, q.CPUMillis(), tc.millis)
		}
		if q.Bytes() != tc.bytes {
			t.Errorf("%q: Bytes = %d, want %d", tc.in, q.Bytes(), tc.bytes)
		}
	}
}
