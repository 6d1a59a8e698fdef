package blueprint

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata golden files (.err, .golden.json)")

// checkGolden compares got with the golden file, or rewrites it with -update.
func checkGolden(t *testing.T, golden string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("mismatch with %s\n--- got\n%s\n--- want\n%s", golden, got, want)
	}
}

// TestLoadValid loads every testdata/valid-*.toml and compares the decoded,
// defaulted manifest with valid-*.golden.json.
func TestLoadValid(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid-*.toml")
	if len(files) == 0 {
		t.Fatal("no testdata/valid-*.toml")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			pkg, err := Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			wantFile, _ := filepath.Abs(file)
			if pkg.File != wantFile || pkg.Dir != filepath.Dir(wantFile) {
				t.Errorf("File, Dir = %q, %q; want %q, %q", pkg.File, pkg.Dir, wantFile, filepath.Dir(wantFile))
			}
			got, err := json.MarshalIndent(pkg.Manifest, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, strings.TrimSuffix(file, ".toml")+".golden.json", append(got, '\n'))
		})
	}
}

// TestLoadInvalid loads every testdata/invalid-*.toml and compares the exact
// error text with the .err file next to it.
func TestLoadInvalid(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid-*.toml")
	if len(files) == 0 {
		t.Fatal("no testdata/invalid-*.toml")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			pkg, err := Load(file)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", pkg.Manifest)
			}
			var pe *ParseError
			var ve *ValidationError
			if !errors.As(err, &pe) && !errors.As(err, &ve) {
				t.Errorf("error is %T, want *ParseError or *ValidationError", err)
			}
			checkGolden(t, strings.TrimSuffix(file, ".toml")+".err", []byte(err.Error()+"\n"))
		})
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/valid-minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	pkg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if pkg.Dir != dir || pkg.File != filepath.Join(dir, ManifestFile) || pkg.Manifest.Name != "minimal" {
		t.Errorf("got Dir %q File %q name %q", pkg.Dir, pkg.File, pkg.Manifest.Name)
	}

	if _, err := Load(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want os.ErrNotExist", err)
	}
	empty := t.TempDir()
	if _, err := Load(empty); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(dir without manifest) = %v, want os.ErrNotExist", err)
	}
}

func TestLoadRefusesHugeManifest(t *testing.T) {
	file := filepath.Join(t.TempDir(), ManifestFile)
	if err := os.WriteFile(file, bytes.Repeat([]byte("# padding\n"), maxManifestBytes/10+1), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(file)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load(huge) = %v, want a size error", err)
	}
}

func TestEchoExampleIsValid(t *testing.T) {
	pkg, err := Load("../../examples/echo")
	if err != nil {
		t.Fatal(err)
	}
	m := pkg.Manifest
	if m.Name != "echo" || m.Version != "0.1.0" || m.BlueprintID == nil || *m.BlueprintID != 1 {
		t.Errorf("identity = %q %q %v", m.Name, m.Version, m.BlueprintID)
	}
	if len(m.Sources) != 2 || m.Sources[0].Kind != SourceTesting || m.Sources[1].Kind != SourceContainer ||
		m.Sources[1].Image != "bpm.local/echo:0.1.0" {
		t.Errorf("sources = %+v", m.Sources)
	}
	if hp, ok := m.HealthPort(); !ok || hp.Name != "http" || hp.Port != 8080 {
		t.Errorf("HealthPort = %+v, %v", hp, ok)
	}
	if m.Health.HTTP != "/healthz" || m.Health.Interval.Duration != 2*time.Second || m.Health.Timeout.Duration != time.Second {
		t.Errorf("health = %+v", m.Health)
	}
	if m.Env["PORT"] != "8080" {
		t.Errorf("env = %v", m.Env)
	}
}

// TestValidateReportsEveryProblem checks that one call names all broken
// fields, in manifest order, rather than stopping at the first.
func TestValidateReportsEveryProblem(t *testing.T) {
	doc := `
name = "Bad Name"
version = "1"
[[sources]]
kind = "native"
[[sources.binaries]]
os = "linux"
arch = "amd64"
path = "x"
sha256 = "nothex"
[resources]
gpu = -2
[env]
DATA_DIR = "/tmp"
`
	_, err := Parse([]byte(doc), "blueprint.toml")
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse = %v (%T), want *ValidationError", err, err)
	}
	var fields []string
	for _, p := range ve.Problems {
		fields = append(fields, p.Field)
	}
	want := []string{"name", "version", "sources[0].binaries[0].sha256", "resources.gpu", "env.DATA_DIR"}
	if strings.Join(fields, ",") != strings.Join(want, ",") {
		t.Fatalf("problem fields = %v, want %v", fields, want)
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(want) {
		t.Errorf("Error() has %d lines, want one per problem:\n%s", len(lines), err)
	}
	// Fields outside arrays carry the line of their key; those inside an
	// array do not (see placeProblems).
	if !strings.HasPrefix(err.Error(), "blueprint.toml:2:1: name: ") ||
		!strings.Contains(err.Error(), "\nblueprint.toml: sources[0].binaries[0].sha256: ") ||
		!strings.Contains(err.Error(), "\nblueprint.toml:12:1: resources.gpu: ") {
		t.Errorf("Error() = %q, want each line to start with the file, the key's line where known, and the field", err)
	}
}

func TestParseDefaults(t *testing.T) {
	m, err := Parse([]byte(`
name = "d"
version = "0.1.0"
sources = [{ kind = "native", binaries = [{ os = "linux", arch = "arm64", path = "b", sha256 = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08" }] }]
ports = [{ name = "a", port = 1 }]
health = { tcp = true }
`), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	if m.Ports[0].Protocol != "tcp" {
		t.Errorf("protocol = %q, want tcp", m.Ports[0].Protocol)
	}
	if m.Health.Interval.Duration != DefaultHealthInterval || m.Health.Timeout.Duration != DefaultHealthTimeout {
		t.Errorf("health durations = %v/%v, want defaults", m.Health.Interval, m.Health.Timeout)
	}
	if got := m.Sources[0].Binaries[0].SHA256; got != strings.ToLower(got) {
		t.Errorf("sha256 not normalised: %s", got)
	}
}

func TestReservedEnvCannotBeChangedByCallers(t *testing.T) {
	r := ReservedEnv()
	r[0] = "CHANGED"
	if !IsReservedEnv("BLUEPRINT_ID") || IsReservedEnv("CHANGED") {
		t.Fatal("mutating the returned slice changed the rule")
	}
	for _, name := range []string{"SERVICE_ID", "DATA_DIR", "BRIDGE_SOCKET_PATH", "KEYSTORE_URI", "PROTOCOL",
		"CHAIN", "HTTP_RPC_URL", "WS_RPC_URL", "REGISTRATION_MODE_ON"} {
		if !IsReservedEnv(name) {
			t.Errorf("%s is not reserved", name)
		}
	}
}

func TestParseCPU(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  string
	}{
		{"0.5", 500, ""},
		{"2", 2000, ""},
		{"500m", 500, ""},
		{"1.25", 1250, ""},
		{"0", 0, ""},
		{"0.0005", 0, `cpu "0.0005": finer than one millicore`},
		{"1.5m", 0, `cpu "1.5m": finer than one millicore`},
		{"", 0, `cpu "": not a number`},
		{"-1", 0, `cpu "-1": not a number`},
		{"1e3", 0, `cpu "1e3": not a number`},
		{"1 ", 0, `cpu "1 ": not a number`},
		{"99999999999999999999", 0, `cpu "99999999999999999999": too large`},
	} {
		got, err := ParseCPU(c.in)
		if c.err == "" {
			if err != nil || got != c.want {
				t.Errorf("ParseCPU(%q) = %d, %v; want %d", c.in, got, err, c.want)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), c.err) {
			t.Errorf("ParseCPU(%q) = %d, %v; want error starting %q", c.in, got, err, c.err)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  string
	}{
		{"1048576", 1 << 20, ""},
		{"512Mi", 512 << 20, ""},
		{"1Gi", 1 << 30, ""},
		{"1G", 1_000_000_000, ""},
		{"1.5Gi", 3 << 29, ""},
		{"64k", 64_000, ""},
		{"7Ei", 7 << 60, ""},
		{"8Ei", 0, `size "8Ei": too large`},
		{"1.5", 0, `size "1.5": not a whole number of bytes`},
		{"1GB", 0, `size "1GB": not a number`},
		{"1K", 0, `size "1K": not a number`},
		{"Mi", 0, `size "Mi": not a number`},
		{"-1Gi", 0, `size "-1Gi": not a number`},
	} {
		got, err := ParseBytes(c.in)
		if c.err == "" {
			if err != nil || got != c.want {
				t.Errorf("ParseBytes(%q) = %d, %v; want %d", c.in, got, err, c.want)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), c.err) {
			t.Errorf("ParseBytes(%q) = %d, %v; want error starting %q", c.in, got, err, c.err)
		}
	}
}

// TestParseExactSpelling checks that keys are matched as spelled, which
// go-toml's own strict mode does not do, and that an unknown key and a
// type mismatch are reported together, in file order.
func TestParseExactSpelling(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`Name = "x"`, `blueprint.toml:1:1: unknown key "Name" (did you mean "name"?)`},
		{"name = \"x\"\nversion = \"1\"\n[[sources]]\nKind = \"testing\"\n",
			`blueprint.toml:4:1: unknown key "sources.Kind" (did you mean "kind"?)`},
		{"sources = [{ kind = \"testing\", \"dir\" = \".\", args = [], ARGS = [] }]\n",
			`blueprint.toml:1:56: unknown key "sources.ARGS" (did you mean "args"?)`},
		{"version = 1\nresources.CPU = \"1\"\n",
			"blueprint.toml:1:11: version: expected a string, got integer\n" +
				`blueprint.toml:2:11: unknown key "resources.CPU" (did you mean "cpu"?)`},
	} {
		_, err := Parse([]byte(tc.doc), "blueprint.toml")
		var pe *ParseError
		if !errors.As(err, &pe) || err.Error() != tc.want {
			t.Errorf("Parse(%q) = %v (%T)\nwant %s", tc.doc, err, err, tc.want)
		}
	}
}
