package ssh

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// loadSSHConfig reads the OpenSSH client config bpm honours: path, or
// ~/.ssh/config when path is empty (a missing default file is no config).
// A file that does not parse is an error rather than ignored: connecting
// somewhere other than where `ssh` would go is worse than not connecting.
func loadSSHConfig(path string) (*ssh_config.Config, error) {
	explicit := path != ""
	if !explicit {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, nil
		}
		path = filepath.Join(home, ".ssh", "config")
	}
	f, err := os.Open(path)
	if err != nil {
		if !explicit && errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("ssh_config: %w", err)
	}
	defer f.Close()
	c, err := ssh_config.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("ssh_config %s: %w (set ssh_config to another file, or /dev/null to use none)", path, err)
	}
	return c, nil
}

// hop is one SSH connection on the way to a host: the address dialled and
// checked against known_hosts, the user, and the IdentityFiles the config
// names for it.
type hop struct {
	addr       string
	user       string
	identities []string
}

// maxJumps bounds ProxyJump chains, which may refer to each other.
const maxJumps = 8

// route is how to reach a hosts entry, as OpenSSH would from the same
// config: the ProxyJump hops in order, then the host itself. An entry's own
// port (host:port) wins over the config's Port, which wins over the
// remote's port; the remote's user wins over the config's User.
func (p *pool) route(entry string) ([]hop, error) {
	host, port, err := splitEntry(entry)
	if err != nil {
		return nil, err
	}
	return p.resolve(host, p.cfg.User, port, strconv.Itoa(p.cfg.Port), 0)
}

// splitEntry splits a hosts entry into host and its explicit port, if any.
func splitEntry(entry string) (host, port string, err error) {
	if strings.HasPrefix(entry, "[") || strings.Count(entry, ":") == 1 {
		return net.SplitHostPort(entry)
	}
	return entry, "", nil
}

// resolve applies the config to alias and returns the hops that reach it.
func (p *pool) resolve(alias, user, port, defPort string, depth int) ([]hop, error) {
	if depth > maxJumps {
		return nil, fmt.Errorf("ssh_config: ProxyJump chain longer than %d (a loop?)", maxJumps)
	}
	alias = strings.ToLower(alias) // as ssh does before matching Host patterns
	get := func(key string) string {
		if p.sshConfig == nil {
			return ""
		}
		v, _ := p.sshConfig.Get(alias, key)
		return strings.TrimSpace(v)
	}
	h := hop{user: user}
	hostname := alias
	if v := get("HostName"); v != "" {
		hostname = strings.ReplaceAll(v, "%h", alias)
	}
	if port == "" {
		port = get("Port")
	}
	if port == "" {
		port = defPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("ssh_config: host %s: port %q", alias, port)
	}
	if h.user == "" {
		h.user = get("User")
	}
	if h.user == "" {
		h.user = localUser()
	}
	h.addr = net.JoinHostPort(hostname, port)
	if p.sshConfig != nil {
		ids, _ := p.sshConfig.GetAll(alias, "IdentityFile")
		for _, id := range ids {
			h.identities = append(h.identities, expandTokens(id, alias, hostname, h.user))
		}
	}
	if pc := get("ProxyCommand"); pc != "" && !strings.EqualFold(pc, "none") {
		// bpm runs no local commands for a connection; silently going
		// direct instead would reach the host another way than ssh does.
		return nil, fmt.Errorf("ssh_config: host %s: ProxyCommand is not supported (use ProxyJump)", alias)
	}
	pj := get("ProxyJump")
	if pj == "" || strings.EqualFold(pj, "none") {
		return []hop{h}, nil
	}
	// "a,b": a is reached as its own config says (its ProxyJump too), b
	// through a, and the host through b.
	var chain []hop
	for i, j := range strings.Split(pj, ",") {
		ju, jh, jp, err := parseJump(strings.TrimSpace(j))
		if err != nil {
			return nil, fmt.Errorf("ssh_config: host %s: ProxyJump %q: %w", alias, pj, err)
		}
		hops, err := p.resolve(jh, ju, jp, "22", depth+1)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			hops = hops[len(hops)-1:]
		}
		chain = append(chain, hops...)
	}
	return append(chain, h), nil
}

// parseJump reads one ProxyJump element: [user@]host[:port] or
// ssh://[user@]host[:port].
func parseJump(s string) (user, host, port string, err error) {
	if s == "" {
		return "", "", "", errors.New("empty hop")
	}
	if !strings.HasPrefix(s, "ssh://") {
		s = "ssh://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", "", "", errors.New("want [user@]host[:port]")
	}
	if u.User != nil {
		user = u.User.Username()
	}
	return user, u.Hostname(), u.Port(), nil
}

// expandTokens expands the IdentityFile tokens and ~ that OpenSSH does.
func expandTokens(s, alias, hostname, user string) string {
	home, _ := os.UserHomeDir()
	if s == "~" || strings.HasPrefix(s, "~/") {
		s = home + s[1:]
	}
	r := strings.NewReplacer("%%", "%", "%d", home, "%h", hostname, "%n", alias, "%r", user, "%u", localUser())
	return r.Replace(s)
}

// localUser is the name of the user bpm runs as, as ssh would log in:
// $USER is often unset under a service manager, so the account database
// decides.
func localUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}
