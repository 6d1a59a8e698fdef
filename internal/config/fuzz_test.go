package config_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/bpm-project/bpm/internal/config"
)

// FuzzParse checks that no input makes the loader panic, that every
// failure is a *config.Error with at least one problem, and that every
// config it accepts can be printed redacted.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.toml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("[remote.a]\ntype='docker'\n[[remote.a.regions]]\nx=1\n"))
	f.Add([]byte("remote.a.type='ssh'\nremote.a.hosts=['h']\nremote.a.runtime={type='native'}\n"))
	opts := config.LoadOptions{
		Getenv:   testEnv(map[string]string{"A": "a"}),
		Home:     "/home/op",
		BaseDir:  "/etc/bpm",
		Keystore: mapKeystore{"k": "v"},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse(data, "f.toml", opts)
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %T without problems: %v", err, err)
			}
			return
		}
		if _, err := json.Marshal(config.Redacted(cfg)); err != nil {
			t.Fatalf("redacted config does not marshal: %v", err)
		}
		for _, name := range cfg.RemoteNames() {
			if cfg.Remotes[name].Settings == nil {
				t.Fatalf("remote %q has no settings", name)
			}
		}
	})
}
