package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/keystore"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/docker"
	"github.com/bpm-project/bpm/internal/provider/kubernetes"
	"github.com/bpm-project/bpm/internal/provider/ssh"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The remote schemas are registered here rather than through the builtin
// package, so this test does not depend on the local provider's build.
func TestMain(m *testing.M) {
	provider.Register(kubernetes.Info())
	provider.Register(docker.Info())
	provider.Register(ssh.Info())
	os.Exit(m.Run())
}

// A real WireGuard key (from `wg genkey`) and a fly-style token. Tests check
// that neither ever shows up in output.
const (
	wgKey    = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
	flyToken = "FlyV1 fm2_lJPECAAAAAAAAxyz"
)

func testEnv(extra map[string]string) func(string) (string, bool) {
	env := map[string]string{"WIREGUARD_KEY": wgKey, "FLY_AUTH_TOKEN": flyToken}
	for k, v := range extra {
		env[k] = v
	}
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func testOpts() config.LoadOptions {
	return config.LoadOptions{Getenv: testEnv(nil), Home: "/home/op", BaseDir: "/etc/bpm"}
}

func parseFile(t *testing.T, path string, opts config.LoadOptions) (*config.Config, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return config.Parse(data, filepath.Base(path), opts)
}

// checkGolden compares got with the golden file, or rewrites it with -update.
func checkGolden(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", golden, got, want)
	}
}

// TestInvalid parses every testdata/invalid-*.toml and compares the whole
// error text with invalid-*.err.
func TestInvalid(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid-*.toml")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := parseFile(t, f, testOpts())
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *config.Error: %v", err, err)
			}
			checkGolden(t, strings.TrimSuffix(f, ".toml")+".err", err.Error()+"\n")
		})
	}
}

// TestValid parses every testdata/valid-*.toml and compares the redacted
// config (what `bpm config show -o json` prints) with valid-*.json.
func TestValid(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid-*.toml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := parseFile(t, f, testOpts())
			if err != nil {
				t.Fatal(err)
			}
			out, err := json.MarshalIndent(config.Redacted(cfg), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, strings.TrimSuffix(f, ".toml")+".json", string(out)+"\n")
		})
	}
}

// TestSpecExamples loads the spec's three example configs exactly as the
// spec writes them, with their variables set, and checks what they mean.
func TestSpecExamples(t *testing.T) {
	t.Run("aws", func(t *testing.T) {
		cfg, err := parseFile(t, "testdata/spec-aws.toml", testOpts())
		if err != nil {
			t.Fatal(err)
		}
		r := cfg.Remotes["aws"]
		if r == nil || r.Type != "kubernetes" || r.Line != 1 {
			t.Fatalf("remote aws = %+v", r)
		}
		got := r.Settings.(*kubernetes.Config)
		want := &kubernetes.Config{
			Type:       "kubernetes",
			Kubeconfig: "/home/op/.kube/eks-config",
			Context:    "eks-us-west-2",
			Namespace:  "blueprint-production",
			Resources:  config.Resources{CPULimit: "4", MemoryLimit: "8Gi", MaxInstances: 10},
			Tunnel:     config.Tunnel{Endpoint: "hub.mycompany.com:51820", PrivateKey: wgKey},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("settings = %#v\nwant %#v", *got, *want)
		}
		if got.Tunnel.PrivateKey.Reveal() != wgKey {
			t.Error("private key not expanded from WIREGUARD_KEY")
		}
	})
	t.Run("fly", func(t *testing.T) {
		cfg, err := parseFile(t, "testdata/spec-fly.toml", testOpts())
		if err != nil {
			t.Fatal(err)
		}
		got := cfg.Remotes["fly"].Settings.(*docker.Config)
		want := &docker.Config{
			Type:         "docker",
			Endpoint:     "https://api.fly.io",
			AuthToken:    flyToken,
			Organization: "my-org",
			Regions:      docker.Regions{Primary: "sea", Replicas: []string{"lax", "ewr"}},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("settings = %#v\nwant %#v", *got, *want)
		}
	})
	t.Run("homelab", func(t *testing.T) {
		cfg, err := parseFile(t, "testdata/spec-homelab.toml", testOpts())
		if err != nil {
			t.Fatal(err)
		}
		got := cfg.Remotes["homelab"].Settings.(*ssh.Config)
		want := &ssh.Config{
			Type:    "ssh",
			Hosts:   []string{"192.168.1.10", "192.168.1.11"},
			User:    "blueprint",
			Key:     "/home/op/.ssh/blueprint_deploy",
			Port:    22,
			Runtime: ssh.Runtime{Type: "docker", DockerSocket: "unix:///var/run/docker.sock"},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("settings = %#v\nwant %#v", *got, *want)
		}
	})
	t.Run("all three in one file", func(t *testing.T) {
		var all []byte
		for _, f := range []string{"spec-aws", "spec-fly", "spec-homelab"} {
			b, err := os.ReadFile("testdata/" + f + ".toml")
			if err != nil {
				t.Fatal(err)
			}
			all = append(append(all, b...), '\n')
		}
		cfg, err := config.Parse(all, "config.toml", testOpts())
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.RemoteNames(); !slices.Equal(got, []string{"aws", "fly", "homelab"}) {
			t.Errorf("RemoteNames = %v", got)
		}
		if l := cfg.Remotes["fly"].Line; l != 16 {
			t.Errorf("fly line = %d, want 16", l)
		}
	})
	t.Run("variables unset", func(t *testing.T) {
		opts := testOpts()
		opts.Getenv = func(string) (string, bool) { return "", false }
		_, err := parseFile(t, "testdata/spec-aws.toml", opts)
		want := "spec-aws.toml:14:1: remote.aws.tunnel.private_key: environment variable WIREGUARD_KEY is not set"
		if err == nil || err.Error() != want {
			t.Errorf("err = %v\nwant %s", err, want)
		}
	})
}

func TestExpansion(t *testing.T) {
	env := testEnv(map[string]string{"ORG": "acme", "EMPTY": "", "NS": "team-a"})
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "plain", want: "plain"},
		{in: "${ORG}", want: "acme"},
		{in: "pre-${ORG}-post", want: "pre-acme-post"},
		{in: "${NOPE:-fallback}", want: "fallback"},
		{in: "${EMPTY:-fallback}", want: "fallback"},
		{in: "${ORG:-fallback}", want: "acme"},
		{in: "${NOPE:-}", want: ""},
		{in: "${EMPTY}", want: ""},
		{in: "$$ORG", want: "$ORG"},
		{in: "$${ORG}", want: "${ORG}"},
		{in: "a$b$", want: "a$b$"},
		{in: "$$$$", want: "$$"},
		{in: "${ORG}${NS}", want: "acmeteam-a"},
		{in: "${NOPE}", err: "environment variable NOPE is not set"},
		{in: "${ORG", err: "unterminated ${ (write $$ for a literal dollar)"},
		{in: "${}", err: "invalid ${...} reference: a variable name is letters, digits and _, not starting with a digit"},
		{in: "${A-B}", err: "invalid ${...} reference: a variable name is letters, digits and _, not starting with a digit"},
	} {
		doc := fmt.Sprintf("[remote.x]\ntype = \"docker\"\norganization = %q\n", tc.in)
		opts := testOpts()
		opts.Getenv = env
		cfg, err := config.Parse([]byte(doc), "c.toml", opts)
		if tc.err != "" {
			want := "c.toml:3:1: remote.x.organization: " + tc.err
			if err == nil || err.Error() != want {
				t.Errorf("%q: err = %v, want %s", tc.in, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := cfg.Remotes["x"].Settings.(*docker.Config).Organization; got != tc.want && !strings.ContainsAny(tc.want, " /") {
			t.Errorf("%q expanded to %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestExpansionReachesEveryString(t *testing.T) {
	doc := `
[manager]
package_paths = ["${BP}/a"]
[service_env]
bootnodes = ["/ip4/${IP}/tcp/1"]
[remote.x]
type = "kubernetes"
node_selector = { zone = "${ZONE}" }
image_pull_secrets = ["${PULL}"]
`
	opts := testOpts()
	opts.Getenv = testEnv(map[string]string{"BP": "/bp", "IP": "10.0.0.1", "ZONE": "z1", "PULL": "regcred"})
	cfg, err := config.Parse([]byte(doc), "c.toml", opts)
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Remotes["x"].Settings.(*kubernetes.Config)
	if cfg.Manager.PackagePaths[0] != "/bp/a" || cfg.ServiceEnv.Bootnodes[0] != "/ip4/10.0.0.1/tcp/1" ||
		k.NodeSelector["zone"] != "z1" || k.ImagePullSecrets[0] != "regcred" {
		t.Errorf("not expanded: %v %v %v %v", cfg.Manager.PackagePaths, cfg.ServiceEnv.Bootnodes, k.NodeSelector, k.ImagePullSecrets)
	}
}

func TestPaths(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "~", want: "/home/op"},
		{in: "~/.kube/config", want: "/home/op/.kube/config"},
		{in: "/abs/./x/../kc", want: "/abs/kc"},
		{in: "rel/kc", want: "/etc/bpm/rel/kc"},
		{in: "~root/kc", err: "~user paths are not supported; write the full path"},
	} {
		doc := fmt.Sprintf("[remote.x]\ntype = \"kubernetes\"\nkubeconfig = %q\ncontext = %q\n", tc.in, tc.in)
		cfg, err := config.Parse([]byte(doc), "c.toml", testOpts())
		if tc.err != "" {
			want := "c.toml:3:1: remote.x.kubeconfig: " + tc.err
			if err == nil || err.Error() != want {
				t.Errorf("%q: err = %v, want %s", tc.in, err, want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		k := cfg.Remotes["x"].Settings.(*kubernetes.Config)
		if k.Kubeconfig != tc.want {
			t.Errorf("%q -> %q, want %q", tc.in, k.Kubeconfig, tc.want)
		}
		// A field not tagged path:"true" is left alone.
		if k.Context != tc.in {
			t.Errorf("context %q was rewritten to %q", tc.in, k.Context)
		}
	}

	// A map of paths (docker image_archives): each value is a path.
	cfg, err := config.Parse([]byte("[remote.d]\ntype = \"docker\"\nimage_archives = { \"a:1\" = \"img/a.tar\", \"b:1\" = \"~/b.tar\" }\n"), "c.toml", testOpts())
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Remotes["d"].Settings.(*docker.Config).ImageArchives; got["a:1"] != "/etc/bpm/img/a.tar" || got["b:1"] != "/home/op/b.tar" {
		t.Errorf("image_archives = %v, want each value resolved as a path", got)
	}

	// Without a home directory, ~ is an error naming the key, not a guess.
	opts := config.LoadOptions{Getenv: testEnv(nil), BaseDir: "/etc/bpm"}
	_, err = config.Parse([]byte("[manager]\ndata_dir = \"~/d\"\n"), "c.toml", opts)
	want := "c.toml:2:1: manager.data_dir: cannot expand ~: home directory unknown (HOME is not set)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

// mapKeystore is a keystore resolver over a map.
type mapKeystore map[string]string

func (m mapKeystore) Get(name string) (string, error) {
	if v, ok := m[name]; ok {
		return v, nil
	}
	return "", fmt.Errorf("keystore: %q: %w", name, keystore.ErrNotFound)
}

var _ config.Keystore = (*keystore.Keystore)(nil)

func TestKeystoreReferences(t *testing.T) {
	doc := []byte(`
[remote.fly]
type = "docker"
endpoint = "https://api.fly.io"
auth_token = "keystore:fly-token"

[remote.lab]
type = "ssh"
hosts = ["pi"]
key = "/k"
key_passphrase = "keystore:${KEYNAME:-lab-key}"
`)
	opts := testOpts()
	opts.Keystore = mapKeystore{"fly-token": flyToken, "lab-key": "pass phrase"}
	cfg, err := config.Parse(doc, "c.toml", opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Remotes["fly"].Settings.(*docker.Config).AuthToken.Reveal(); got != flyToken {
		t.Errorf("auth_token = %q", got)
	}
	if got := cfg.Remotes["lab"].Settings.(*ssh.Config).KeyPassphrase.Reveal(); got != "pass phrase" {
		t.Errorf("key_passphrase = %q", got)
	}

	opts.Keystore = mapKeystore{}
	_, err = config.Parse(doc, "c.toml", opts)
	want := `c.toml:5:1: remote.fly.auth_token: keystore has no entry "fly-token" (add it with: bpm keys set fly-token)
c.toml:11:1: remote.lab.key_passphrase: keystore has no entry "lab-key" (add it with: bpm keys set lab-key)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

// TestRealKeystore resolves a reference through an actual encrypted
// keystore. It costs about a second of scrypt.
func TestRealKeystore(t *testing.T) {
	if testing.Short() {
		t.Skip("scrypt is slow")
	}
	pass, _ := keystore.NewPassphrase("test passphrase")
	ks, err := keystore.Open(t.TempDir(), pass)
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Set("wg-aws", wgKey); err != nil {
		t.Fatal(err)
	}
	opts := testOpts()
	opts.Keystore = ks
	cfg, err := config.Parse([]byte("[remote.aws]\ntype = \"kubernetes\"\n[remote.aws.tunnel]\nprivate_key = \"keystore:wg-aws\"\n"), "c.toml", opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Remotes["aws"].Settings.(*kubernetes.Config).Tunnel.PrivateKey.Reveal(); got != wgKey {
		t.Errorf("private_key = %q", got)
	}
}

// TestRedaction checks that no secret, whether from the environment, the
// keystore or a literal, appears in anything that prints a config.
func TestRedaction(t *testing.T) {
	const (
		litPass  = "literal-passphrase-9"
		ksSecret = "secret-from-keystore-7"
	)
	doc := []byte(`
[remote.aws]
type = "kubernetes"
context = "ctx-${WIREGUARD_KEY}"
[remote.aws.tunnel]
endpoint = "hub:51820"
private_key = "${WIREGUARD_KEY}"

[remote.fly]
type = "docker"
endpoint = "https://api.fly.io"
auth_token = "${FLY_AUTH_TOKEN}"
organization = "keystore-secret-in-${MIRROR}"

[remote.lab]
type = "ssh"
hosts = ["pi"]
key = "/k"
key_passphrase = "` + litPass + `"

[remote.lab2]
type = "ssh"
hosts = ["pi"]
key = "/k"
key_passphrase = "keystore:lab2"
`)
	opts := testOpts()
	opts.Getenv = testEnv(map[string]string{"MIRROR": ksSecret})
	opts.Keystore = mapKeystore{"lab2": ksSecret}
	cfg, err := config.Parse(doc, "c.toml", opts)
	if err != nil {
		t.Fatal(err)
	}
	red := config.Redacted(cfg)

	j, err := json.Marshal(red)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := toml.Marshal(red)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{string(j), string(tm), fmt.Sprintf("%v %+v", red, red), fmt.Sprintf("%v %+v %#v", *cfg, *cfg, *cfg)} {
		for _, s := range []string{wgKey, flyToken, litPass, ksSecret} {
			if strings.Contains(out, s) {
				t.Errorf("secret %q printed in:\n%s", s, out)
			}
		}
	}

	// Printing a provider's settings directly, as a careless log line
	// might, shows no secret field. (A secret the operator copied into a
	// plain field is only scrubbed by Redacted, so those remotes are not
	// checked here.)
	for _, name := range []string{"lab", "lab2"} {
		s := cfg.Remotes[name].Settings
		sj, _ := json.Marshal(s)
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("remote", "settings", s)
		out := fmt.Sprintf("%v|%+v|%#v|%s|%s|%s", s, s, s, s, sj, buf.String())
		if strings.Contains(out, litPass) || strings.Contains(out, ksSecret) {
			t.Errorf("secret printed in:\n%s", out)
		}
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "tunnel", cfg.Remotes["aws"].Settings.(*kubernetes.Config).Tunnel,
		"token", cfg.Remotes["fly"].Settings.(*docker.Config).AuthToken)
	if strings.Contains(buf.String(), wgKey) || strings.Contains(buf.String(), flyToken) {
		t.Errorf("secret logged: %s", buf.String())
	}

	remote := red["remote"].(map[string]any)
	for _, c := range []struct{ remote, path, want string }{
		{"aws", "tunnel.private_key", "REDACTED"},
		{"fly", "auth_token", "REDACTED"},
		{"lab", "key_passphrase", "REDACTED"},
		{"lab2", "key_passphrase", "REDACTED"},
		// Secrets copied into plain fields are scrubbed there too.
		{"aws", "context", "ctx-REDACTED"},
		{"fly", "organization", "keystore-secret-in-REDACTED"},
		{"fly", "tunnel.private_key", ""}, // unset stays visibly unset
		{"fly", "endpoint", "https://api.fly.io"},
	} {
		var v any = remote[c.remote]
		for _, k := range strings.Split(c.path, ".") {
			v = v.(map[string]any)[k]
		}
		if v != c.want {
			t.Errorf("%s.%s = %v, want %q", c.remote, c.path, v, c.want)
		}
	}
}

// TestSecretFieldsAreSecretType keeps the schemas honest: a field tagged
// secret:"true" must have the type config.Secret (so it cannot print) and
// the reverse, in every registered provider's config.
func TestSecretFieldsAreSecretType(t *testing.T) {
	secretT := reflect.TypeFor[config.Secret]()
	var check func(t *testing.T, typ reflect.Type, path string)
	check = func(t *testing.T, typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			return
		}
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tagged := f.Tag.Get("secret") == "true"
			if tagged != (f.Type == secretT) {
				t.Errorf("%s.%s: secret tag %v but type %s", path, f.Name, tagged, f.Type)
			}
			check(t, f.Type, path+"."+f.Name)
		}
	}
	for _, typ := range provider.Types() {
		info, _ := provider.Lookup(typ)
		if info.NewConfig != nil {
			check(t, reflect.TypeOf(info.NewConfig()), typ)
		}
	}
	check(t, reflect.TypeFor[config.Manager](), "manager")
	check(t, reflect.TypeFor[config.ServiceEnv](), "service_env")
}

func TestDefaults(t *testing.T) {
	opts := config.LoadOptions{Getenv: testEnv(nil), Home: "/home/op"}
	cfg, err := config.Parse(nil, "c.toml", opts)
	if err != nil {
		t.Fatal(err)
	}
	wantM := config.Manager{
		DataDir:     "/home/op/.local/share/bpm",
		RuntimeDir:  "/home/op/.local/share/bpm/run",
		Socket:      "/home/op/.local/share/bpm/run/manager.sock",
		LogLevel:    "info",
		KeystoreDir: "/home/op/.local/share/bpm/keystore",
	}
	if !reflect.DeepEqual(cfg.Manager, wantM) {
		t.Errorf("manager = %+v\nwant %+v", cfg.Manager, wantM)
	}
	wantE := config.ServiceEnv{
		HTTPRPCURL:  "http://127.0.0.1:9944",
		WSRPCURL:    "ws://127.0.0.1:9944",
		KeystoreURI: "/home/op/.local/share/bpm/keystore-sdk",
		Protocol:    "tangle",
		Chain:       "local_testnet",
	}
	if !reflect.DeepEqual(cfg.ServiceEnv, wantE) {
		t.Errorf("service_env = %+v\nwant %+v", cfg.ServiceEnv, wantE)
	}
	if len(cfg.Remotes) != 0 {
		t.Errorf("remotes = %v", cfg.Remotes)
	}

	// XDG directories, and the chain following a non-local RPC URL.
	opts.Getenv = testEnv(map[string]string{"XDG_DATA_HOME": "/xdg/data", "XDG_RUNTIME_DIR": "/run/user/1000"})
	cfg, err = config.Parse([]byte("[service_env]\nhttp_rpc_url = \"https://rpc.tangle.tools\"\n"), "c.toml", opts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Manager.DataDir != "/xdg/data/bpm" || cfg.Manager.Socket != "/run/user/1000/bpm/manager.sock" ||
		cfg.ServiceEnv.Chain != "testnet" || cfg.ServiceEnv.KeystoreURI != "/xdg/data/bpm/keystore-sdk" {
		t.Errorf("got %+v %+v", cfg.Manager, cfg.ServiceEnv)
	}
	if cfg.Manager.SlogLevel() != slog.LevelInfo {
		t.Errorf("SlogLevel = %v", cfg.Manager.SlogLevel())
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	getenv := testEnv(map[string]string{"BPM_CONFIG_DIR": dir})
	opts := config.LoadOptions{Getenv: getenv, Home: "/home/op"}

	// No file at the default location: built-in defaults.
	cfg, err := config.Load("", opts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != "" || cfg.Manager.LogLevel != "info" {
		t.Errorf("defaults: File=%q manager=%+v", cfg.File, cfg.Manager)
	}

	// An explicit file must exist.
	if _, err := config.Load(filepath.Join(dir, "production.toml"), opts); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing explicit file: err = %v", err)
	}

	// A file at the default location is read, and its relative paths are
	// resolved against its own directory.
	path := filepath.Join(dir, config.FileName)
	if err := os.WriteFile(path, []byte("[manager]\ndata_dir = \"data\"\nlog_level = \"warn\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = config.Load("", opts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != path || cfg.Manager.DataDir != filepath.Join(dir, "data") || cfg.Manager.SlogLevel() != slog.LevelWarn {
		t.Errorf("File=%q manager=%+v", cfg.File, cfg.Manager)
	}

	// Errors name the file as given.
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[manager]\nlog_levl = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(bad, opts)
	want := bad + `:2:1: unknown key "manager.log_levl" (did you mean "log_level"?)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

func TestNoRemoteProviders(t *testing.T) {
	// A remote type that is not registered reads as unknown, listing the
	// known ones, so a bpm_noremote build explains itself.
	_, err := config.Parse([]byte("[remote.x]\ntype = \"nomad\"\n"), "c.toml", testOpts())
	want := `c.toml:2:1: remote "x": unknown type "nomad" (known: docker, kubernetes, ssh)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

// TestKeystoreRefInPathField checks that keystore:NAME in a path field is
// refused like in any other non-secret field, even with a keystore at hand,
// rather than resolved against the config directory as a file name.
func TestKeystoreRefInPathField(t *testing.T) {
	const refused = "keystore references are only allowed in secret fields"
	for _, tc := range []struct{ doc, want string }{
		{"[manager]\nsocket = \"keystore:x\"\n", "c.toml:2:1: manager.socket: " + refused},
		{"[manager]\npackage_paths = [\"/ok\", \"keystore:x\"]\n", "c.toml:2:1: manager.package_paths[1]: " + refused},
		{"[manager]\ndata_dir = \"${REF}\"\n", "c.toml:2:1: manager.data_dir: " + refused},
		{"[remote.lab]\ntype = \"ssh\"\nhosts = [\"pi\"]\nkey = \"keystore:x\"\n", "c.toml:4:1: remote.lab.key: " + refused},
	} {
		opts := testOpts()
		opts.Getenv = testEnv(map[string]string{"REF": "keystore:x"})
		opts.Keystore = mapKeystore{"x": "secret"}
		_, err := config.Parse([]byte(tc.doc), "c.toml", opts)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: err = %v\nwant %s", tc.doc, err, tc.want)
		}
	}
}
