//go:build !bpm_noremote

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bpm-project/bpm/internal/testenv"
)

// useRemote rewrites e's config for deployments to a remote: the proxy on
// proxyPort (0: any free one), the hub listening on hubPort and
// advertised to gateways at hubAddr (containers, pods and hosts reach it
// on a host address, never on loopback), then the remote's sections. The
// keystore passphrase the hub's keys need comes with it.
func (e *env) useRemote(proxyPort, hubPort int, hubAddr, sections string) {
	e.t.Helper()
	cfg := fmt.Sprintf(`
[manager]
data_dir = %q
runtime_dir = %q
log_level = "debug"

[proxy]
listen = "127.0.0.1:%d"

[hub]
listen = "0.0.0.0:%d"
endpoint = "%s:%d"
`, filepath.Join(e.root, "data"), filepath.Join(e.root, "run"), proxyPort, hubPort, hubAddr, hubPort) + sections
	must(e.t, os.WriteFile(filepath.Join(e.root, "cfg", "config.toml"), []byte(cfg), 0o600))
	e.vars = append(e.vars, "BPM_KEYSTORE_PASSPHRASE=e2e passphrase")
}

// dockerTLSRemote is a docker remote on the test environment's TLS engine
// that loads echo's image from archive.
func dockerTLSRemote(remote string, d testenv.Docker, archive string) string {
	return fmt.Sprintf(`
[remote.%s]
type = "docker"
endpoint = %q
ca = %q
cert = %q
key = %q
image_archives = { %q = %q }
`, remote, d.TLSHost, d.TLSCA, d.TLSCert, d.TLSKey, echoImage, archive)
}

// sshNativeRemote is an ssh remote with the native runtime on hosts.
func sshNativeRemote(remote string, s testenv.SSH, hosts ...string) string {
	list := ""
	for i, h := range hosts {
		if i > 0 {
			list += ", "
		}
		list += fmt.Sprintf("%q", h)
	}
	return fmt.Sprintf(`
[remote.%s]
type = "ssh"
hosts = [%s]
user = %q
key = %q
known_hosts = %q
ssh_config = %q

[remote.%s.runtime]
type = "native"
`, remote, list, s.User, s.Key, s.KnownHosts, os.DevNull, remote)
}

// tokenFor mints an operator key for service sid and exchanges it for an
// access token at the proxy, with the CLI, as docs/AUTH.md tells an
// operator to.
func (e *env) tokenFor(proxy string, sid uint64) string {
	e.t.Helper()
	dir := e.t.TempDir()
	keyFile, tokFile := filepath.Join(dir, "api.key"), filepath.Join(dir, "token")
	e.mustRun("auth", "key", "create", "--service-id", fmt.Sprint(sid), "--save", keyFile)
	e.mustRun("auth", "token", "--proxy", strings.TrimSuffix(proxy, "/"), "--api-key-file", keyFile, "--save", tokFile)
	tok, err := os.ReadFile(tokFile)
	must(e.t, err)
	return strings.TrimSpace(string(tok))
}
