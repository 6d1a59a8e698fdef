package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runCLI runs bpm in-process with captured streams.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	s := &IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb}
	code = Main(context.Background(), args, s)
	return out.String(), errb.String(), code
}

// specWorkspace makes a working directory holding a package named
// my-blueprint and the spec's production.toml, with the manager's socket
// pointing at nothing.
func specWorkspace(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	cfgDir := filepath.Join(dir, "cfg")
	os.MkdirAll(cfgDir, 0o700)
	t.Setenv("BPM_CONFIG_DIR", cfgDir)
	t.Setenv("BPM_SOCKET", filepath.Join(dir, "no-manager.sock"))
	t.Setenv("WIREGUARD_KEY", "YEocP0e2o1WT5GlvBvQzVF7EeR6z9aCk6ANCX1Nu5cA=")
	spec := `
[remote.aws]
type = "kubernetes"
kubeconfig = "~/.kube/eks-config"
context = "eks-us-west-2"
namespace = "blueprint-production"

[remote.aws.resources]
cpu_limit = "4"
memory_limit = "8Gi"
max_instances = 10

[remote.aws.tunnel]
endpoint = "hub.mycompany.com:51820"
private_key = "${WIREGUARD_KEY}"
`
	if err := os.WriteFile(filepath.Join(cfgDir, "config.toml"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "production.toml"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(dir, "pkgs", "my-blueprint")
	os.MkdirAll(pkg, 0o755)
	manifest := `
name = "my-blueprint"
version = "1.0.0"

[[sources]]
kind = "container"
image = "ghcr.io/example/my-blueprint:1.0.0"
`
	if err := os.WriteFile(filepath.Join(pkg, "blueprint.toml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSpecCommandLinesParse checks every command line of the spec parses as
// written. With no manager running, API commands exit with the documented
// "manager not running" code; estimate-cost needs no manager and succeeds
// (it prices from the config and the package). None is a usage error, which
// is what a parse failure would give.
func TestSpecCommandLinesParse(t *testing.T) {
	specWorkspace(t)
	cases := []struct {
		line string
		want int
	}{
		{"deploy --remote aws --package my-blueprint", ExitNoManager},
		{"deploy --remote-config ./production.toml --package my-blueprint", ExitNoManager},
		{"list --remote", ExitNoManager},
		{"status --remote --instance bp-abc123", ExitNoManager},
		{"terminate --remote --instance bp-abc123", ExitNoManager},
		{"estimate-cost --remote aws --package my-blueprint", ExitOK},
		{"costs --remote aws", ExitNoManager},
		{"set-alert --remote aws --monthly-limit 100", ExitNoManager},
	}
	for _, c := range cases {
		if !remoteBuild && (strings.HasPrefix(c.line, "deploy") || strings.HasPrefix(c.line, "estimate-cost")) {
			// deploy and estimate-cost read the config, whose kubernetes
			// remote a local-only build rejects as invalid; they still parse.
			c.want = ExitInvalid
		}
		t.Run(c.line, func(t *testing.T) {
			out, errs, code := runCLI(t, strings.Fields(c.line)...)
			if code != c.want {
				t.Fatalf("bpm %s: exit %d, want %d\nstderr: %s", c.line, code, c.want, errs)
			}
			if c.want == ExitOK {
				if !strings.Contains(out, "catalog copied") {
					t.Errorf("bpm %s printed no estimate: %q", c.line, out)
				}
			} else if out != "" {
				t.Errorf("bpm %s printed data although it failed: %q", c.line, out)
			}
			if c.want == ExitNotAvailableYet && !strings.Contains(errs, "not available yet") {
				t.Errorf("stderr does not say the capability is not available yet: %q", errs)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	specWorkspace(t)
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"list", "-o", "xml"}, `unsupported output format "xml"`},
		{[]string{"list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"status"}, "an instance id is required"},
		{[]string{"status", "--instance", "abc"}, `instance id "abc" must start with bp-`},
		{[]string{"deploy"}, "--package is required"},
		{[]string{"set-alert", "--remote", "aws", "--monthly-limit", "-5"}, "--monthly-limit must be a positive amount"},
		{[]string{"logs", "--tail", "-1", "bp-abc"}, "--tail must be ≥ 0"},
		{[]string{"status", "--instance", "bp-a", "bp-b"}, "instance given twice"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"package", "valdate", "x"}, `unknown command "valdate" for "bpm package"`},
		{[]string{"keys", "ls"}, `unknown command "ls" for "bpm keys"`},
		{[]string{"package", "validate"}, "accepts 1 arg(s), received 0"},
		{[]string{"list", "--remote", "a", "b"}, "accepts at most 1 arg(s), received 2"},
		{[]string{"up", "--package", "x", "--service-id", "-1"}, "--service-id must be ≥ 0"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			_, errs, code := runCLI(t, c.args...)
			if code != ExitUsage {
				t.Fatalf("exit %d, want %d (usage); stderr: %s", code, ExitUsage, errs)
			}
			if !strings.Contains(errs, c.msg) {
				t.Fatalf("stderr %q does not contain %q", errs, c.msg)
			}
		})
	}
}

func TestVersionReportsRemoteSupport(t *testing.T) {
	out, errs, code := runCLI(t, "version", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := `"remote_support": true`
	if !remoteBuild {
		want = `"remote_support": false`
	}
	if !strings.Contains(out, want) {
		t.Fatalf("version output lacks %s:\n%s", want, out)
	}
	if !strings.Contains(out, `"local"`) {
		t.Fatalf("version output does not list the local provider:\n%s", out)
	}
}

func TestPackageValidateAndInspect(t *testing.T) {
	specWorkspace(t)
	out, errs, code := runCLI(t, "package", "validate", "my-blueprint")
	if code != 0 || !strings.Contains(out, "my-blueprint 1.0.0 is valid") {
		t.Fatalf("validate: exit %d out %q err %q", code, out, errs)
	}
	out, _, code = runCLI(t, "package", "inspect", "./pkgs/my-blueprint", "-o", "json")
	if code != 0 || !strings.Contains(out, `"image"`) && !strings.Contains(out, "ghcr.io/example/my-blueprint:1.0.0") {
		t.Fatalf("inspect: exit %d out %q", code, out)
	}
	bad := filepath.Join(t.TempDir(), "blueprint.toml")
	os.WriteFile(bad, []byte("name = \"x\"\nversion = \"1.0.0\"\nsourcez = 1\n"), 0o644)
	_, errs, code = runCLI(t, "package", "validate", bad)
	if code != ExitInvalid {
		t.Fatalf("invalid manifest: exit %d, want %d; %s", code, ExitInvalid, errs)
	}
	if !strings.Contains(errs, "3:1") || !strings.Contains(errs, "sourcez") {
		t.Fatalf("error does not name the key and its line: %s", errs)
	}
	// A package asking for a VM boundary says so.
	vm := filepath.Join(t.TempDir(), "blueprint.toml")
	os.WriteFile(vm, []byte("name = \"x\"\nversion = \"1.0.0\"\nisolation = \"vm\"\n[[sources]]\nkind = \"container\"\nimage = \"x:1\"\n"), 0o644)
	out, errs, code = runCLI(t, "package", "inspect", vm)
	if code != 0 || !regexp.MustCompile(`Isolation:\s+vm`).MatchString(out) {
		t.Fatalf("inspect of an isolation = vm package: exit %d out %q err %q", code, out, errs)
	}
}

func TestConfigShowRedactsSecrets(t *testing.T) {
	specWorkspace(t)
	if !remoteBuild {
		// A local-only build must refuse the remote section and say why.
		_, errs, code := runCLI(t, "config", "show")
		if code != ExitInvalid || !strings.Contains(errs, "bpm_noremote") {
			t.Fatalf("local-only build: exit %d, stderr %q", code, errs)
		}
		return
	}
	for _, format := range []string{"table", "json", "yaml"} {
		out, errs, code := runCLI(t, "config", "show", "-o", format)
		if code != 0 {
			t.Fatalf("config show -o %s: exit %d: %s", format, code, errs)
		}
		if strings.Contains(out, "YEocP0e2o1WT5GlvBvQzVF7EeR6z9aCk6ANCX1Nu5cA=") {
			t.Fatalf("config show -o %s printed the secret:\n%s", format, out)
		}
		if !strings.Contains(out, "REDACTED") || !strings.Contains(out, "eks-us-west-2") {
			t.Fatalf("config show -o %s output unexpected:\n%s", format, out)
		}
	}
}

// TestKeystoreCommands: a secret set from stdin is listed by name only,
// resolves a keystore: reference in the config, and never appears in any
// output.
func TestKeystoreCommands(t *testing.T) {
	dir := t.TempDir()
	cfgDir := filepath.Join(dir, "cfg")
	os.MkdirAll(cfgDir, 0o700)
	t.Setenv("BPM_CONFIG_DIR", cfgDir)
	t.Setenv("BPM_KEYSTORE_PASSPHRASE", "correct horse battery staple")
	t.Setenv("BPM_KEYSTORE_KEY_FILE", "")
	const secret = "fly-token-8c1d2e3f"
	cfg := fmt.Sprintf(`
[manager]
data_dir = %q

[remote.fly]
type = "docker"
endpoint = "https://api.fly.io"
auth_token = "keystore:fly-token"
`, filepath.Join(dir, "data"))
	os.WriteFile(filepath.Join(cfgDir, "config.toml"), []byte(cfg), 0o600)

	run := func(stdin string, args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), args, &IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errb})
		if strings.Contains(out.String()+errb.String(), secret) {
			t.Fatalf("bpm %v printed the secret", args)
		}
		return out.String(), errb.String(), code
	}
	if !remoteBuild {
		t.Skip("the config names a docker remote, which a local-only build rejects")
	}
	if _, errs, code := run("", "config", "validate"); code != ExitInvalid || !strings.Contains(errs, "bpm keys set fly-token") {
		t.Fatalf("validate with a missing keystore entry: exit %d %q", code, errs)
	}
	if _, errs, code := run(secret+"\n", "keys", "set", "fly-token"); code != 0 {
		t.Fatalf("keys set: exit %d %s", code, errs)
	}
	if _, errs, code := run("", "keys", "set", "empty"); code != ExitUsage || !strings.Contains(errs, "no value on standard input") {
		t.Fatalf("keys set with empty stdin: exit %d %q", code, errs)
	}
	if _, errs, code := run("x", "keys", "set", "../bad"); code != ExitUsage {
		t.Fatalf("keys set with a bad name: exit %d %q", code, errs)
	}
	out, _, code := run("", "keys", "list", "-o", "json")
	if code != 0 || !strings.Contains(out, `"fly-token"`) {
		t.Fatalf("keys list: exit %d %q", code, out)
	}
	if out, errs, code := run("", "config", "validate"); code != 0 {
		t.Fatalf("validate with the entry set: exit %d %q %q", code, out, errs)
	}
	if out, _, code := run("", "config", "show", "-o", "json"); code != 0 || !strings.Contains(out, "REDACTED") {
		t.Fatalf("config show: exit %d %q", code, out)
	}
	if _, errs, code := run("", "keys", "rm", "fly-token"); code != 0 {
		t.Fatalf("keys rm: %d %s", code, errs)
	}
	if _, _, code := run("", "keys", "rm", "fly-token"); code != ExitNotFound {
		t.Fatalf("keys rm of a missing key: exit %d, want %d", code, ExitNotFound)
	}
	t.Setenv("BPM_KEYSTORE_PASSPHRASE", "wrong")
	if _, errs, code := run("", "keys", "list"); code == 0 || !strings.Contains(errs, "passphrase") {
		t.Fatalf("wrong passphrase: exit %d %q", code, errs)
	}
}

func TestNotFoundExitCodes(t *testing.T) {
	specWorkspace(t)
	// A config without remotes, so a local-only build reads it too.
	os.WriteFile(filepath.Join(os.Getenv("BPM_CONFIG_DIR"), "config.toml"), nil, 0o600)
	for _, args := range [][]string{
		{"package", "validate", "./no/such/dir"},
		{"package", "inspect", "no-such-package"},
		{"deploy", "--package", "no-such-package"},
		{"config", "validate", "--remote-config", "./missing.toml"},
	} {
		_, errs, code := runCLI(t, args...)
		if code != ExitNotFound {
			t.Errorf("bpm %s: exit %d, want %d (not found); %s", strings.Join(args, " "), code, ExitNotFound, errs)
		}
	}
}
