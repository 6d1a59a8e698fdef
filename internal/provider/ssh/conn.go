package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/kevinburke/ssh_config"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// defaultDialTimeout bounds the TCP connect and SSH handshake to one host,
// so an unreachable host costs a deploy seconds, not the kernel's minutes.
const defaultDialTimeout = 15 * time.Second

// defaultKeepAlive is how often an idle-or-not connection is asked to
// answer; keepAliveMissed unanswered asks in a row drop it (OpenSSH's
// ServerAliveInterval and ServerAliveCountMax). A link cut without a reset
// otherwise leaves every SFTP call on it blocked for the kernel's TCP
// timeout, a quarter of an hour, and a deploy with it.
const (
	defaultKeepAlive = 15 * time.Second
	keepAliveMissed  = 3
)

// hostConn is the one SSH connection bpm keeps to a host, with its SFTP
// session: every operation on the host multiplexes channels over it rather
// than paying a handshake each time.
type hostConn struct {
	addr   string
	client *ssh.Client
	sftp   *sftp.Client
	home   string // the login user's home, absolute, from SFTP
	dead   chan struct{}

	// factsMu guards what is asked of the host once per connection: its
	// platform and CPU count cannot change while the connection lasts (a
	// reboot drops it), and asking on every deploy cost an exec session,
	// a shell on the host and a few milliseconds, each time.
	factsMu sync.Mutex
	plat    Platform
	cpus    int
	// systemd is whether the host runs systemd with a user manager the
	// login user reaches; systemdKnown says it was asked.
	systemd, systemdKnown bool
}

func (c *hostConn) connected() bool {
	select {
	case <-c.dead:
		return false
	default:
		return true
	}
}

func (c *hostConn) close() {
	c.sftp.Close()
	c.client.Close()
}

// pool holds at most one live connection per host and redials a host whose
// connection dropped.
type pool struct {
	cfg *Config
	// sshConfig is the OpenSSH client config honoured for every host (nil:
	// none); entries maps a host's pool key to its hosts entry as written.
	sshConfig   *ssh_config.Config
	entries     map[string]string
	logger      *slog.Logger
	dialTimeout time.Duration
	keepAlive   time.Duration

	mu    sync.Mutex
	conns map[string]*hostConn
	// dialing serialises dials per host so concurrent callers share one.
	dialing map[string]*sync.Mutex
}

func newPool(cfg *Config, logger *slog.Logger, dialTimeout, keepAlive time.Duration) *pool {
	return &pool{
		cfg: cfg, logger: logger, dialTimeout: dialTimeout, keepAlive: keepAlive,
		entries: map[string]string{},
		conns:   map[string]*hostConn{}, dialing: map[string]*sync.Mutex{},
	}
}

// get returns the live connection to addr, dialling it when there is none.
func (p *pool) get(ctx context.Context, addr string) (*hostConn, error) {
	p.mu.Lock()
	if c, ok := p.conns[addr]; ok && c.connected() {
		p.mu.Unlock()
		return c, nil
	}
	dl, ok := p.dialing[addr]
	if !ok {
		dl = &sync.Mutex{}
		p.dialing[addr] = dl
	}
	p.mu.Unlock()

	dl.Lock()
	defer dl.Unlock()
	p.mu.Lock()
	if c, ok := p.conns[addr]; ok && c.connected() {
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()

	c, err := p.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.conns[addr] = c
	p.mu.Unlock()
	return c, nil
}

// current returns addr's connection if there is one, live or not, without
// dialling.
func (p *pool) current(addr string) *hostConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[addr]
}

func (p *pool) closeAll() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		c.close()
		delete(p.conns, addr)
	}
	return nil
}

func (p *pool) dial(ctx context.Context, addr string) (*hostConn, error) {
	entry := p.entries[addr]
	if entry == "" {
		entry = addr
	}
	hops, err := p.route(entry)
	if err != nil {
		return nil, fmt.Errorf("ssh: %s: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.dialTimeout)
	defer cancel()
	// Each hop is dialled through the one before (a direct-tcpip channel),
	// with the same host-key checks as a direct connection.
	var clients []*ssh.Client
	closeAll := func() {
		for i := len(clients) - 1; i >= 0; i-- {
			clients[i].Close()
		}
	}
	for i, h := range hops {
		var nc net.Conn
		if i == 0 {
			var d net.Dialer
			nc, err = d.DialContext(ctx, "tcp", h.addr)
		} else {
			nc, err = clients[i-1].DialContext(ctx, "tcp", h.addr)
		}
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("ssh: dial %s%s: %w", h.addr, via(hops[:i]), err)
		}
		client, err := p.handshake(ctx, nc, h)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("ssh: handshake with %s%s: %w", h.addr, via(hops[:i]), err)
		}
		clients = append(clients, client)
	}
	client := clients[len(clients)-1]
	// SFTP's start has no context either: a host that stops answering here
	// must not hold the dial past its timeout.
	stop := context.AfterFunc(ctx, closeAll)
	sf, err := sftp.NewClient(client, sftp.UseConcurrentWrites(true))
	var home string
	if err == nil {
		home, err = sf.Getwd()
		if err == nil && !strings.HasPrefix(home, "/") {
			err = fmt.Errorf("home directory %q is not absolute", home)
		}
		if err != nil {
			sf.Close()
		}
	}
	if !stop() || err != nil {
		closeAll()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("ssh: sftp on %s: %w", addr, err)
	}
	if len(clients) > 1 {
		// The jump connections live as long as the host's.
		go func() {
			_ = client.Wait()
			closeAll()
		}()
	}
	c := &hostConn{addr: addr, client: client, sftp: sf, home: home, dead: make(chan struct{})}
	go func() {
		_ = client.Wait()
		close(c.dead)
	}()
	go p.keepAliveLoop(c)
	p.logger.Debug("connected", "host", addr)
	return c, nil
}

// keepAliveLoop asks the host to answer every keepAlive and closes the
// connection when keepAliveMissed asks go unanswered. Closing it fails
// every call blocked on it at once (SFTP calls take no context), and the
// next use of the host dials again.
func (p *pool) keepAliveLoop(c *hostConn) {
	t := time.NewTicker(p.keepAlive)
	defer t.Stop()
	for {
		select {
		case <-c.dead:
			return
		case <-t.C:
		}
		answered := make(chan struct{})
		go func() {
			// OpenSSH answers this unknown request with a failure: any
			// answer proves the host and the link are alive.
			_, _, _ = c.client.SendRequest("keepalive@openssh.com", true, nil)
			close(answered)
		}()
		select {
		case <-c.dead:
			return
		case <-answered:
		case <-time.After(keepAliveMissed * p.keepAlive):
			p.logger.Warn("host stopped answering; dropping the connection", "host", c.addr,
				"silent_for", keepAliveMissed*p.keepAlive)
			c.client.Close()
			return
		}
	}
}

// lost explains err when the host's connection died under it: the error
// then says so and matches provider.ErrUnavailable, rather than showing
// only the SFTP or session error it surfaced as.
func (c *hostConn) lost(err error) error {
	if err == nil {
		return nil
	}
	// The failed call may return a moment before the connection's own
	// teardown is seen.
	select {
	case <-c.dead:
	case <-time.After(200 * time.Millisecond):
		return err
	}
	return fmt.Errorf("connection to %s lost: %w: %w", c.addr, provider.ErrUnavailable, err)
}

// handshake runs the SSH handshake for h over nc, bounded by ctx (the
// handshake takes no context, and nc may be a channel, which has no
// deadlines).
func (p *pool) handshake(ctx context.Context, nc net.Conn, h hop) (*ssh.Client, error) {
	auth, release, err := p.authMethods(h.identities)
	if err != nil {
		nc.Close()
		return nil, err
	}
	defer release()
	cc := &ssh.ClientConfig{
		User:            h.user,
		Auth:            auth,
		HostKeyCallback: p.hostKeyCallback(),
		Timeout:         p.dialTimeout,
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(nc, h.addr, cc)
	if !stop() {
		if err == nil {
			sc.Close()
		}
		return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

func via(hops []hop) string {
	if len(hops) == 0 {
		return ""
	}
	names := make([]string, len(hops))
	for i, h := range hops {
		names[i] = h.addr
	}
	return " via " + strings.Join(names, ", ")
}

// authMethods returns how to authenticate, and a release func to call once
// the handshake is over.
func (p *pool) authMethods(identities []string) ([]ssh.AuthMethod, func(), error) {
	if p.cfg.Key != "" {
		pem, err := os.ReadFile(p.cfg.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("ssh: read key: %w", err)
		}
		var signer ssh.Signer
		if pass := p.cfg.KeyPassphrase.Reveal(); pass != "" {
			signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(pass))
		} else {
			signer, err = ssh.ParsePrivateKey(pem)
		}
		var missing *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &missing):
			return nil, nil, fmt.Errorf("ssh: key %s is encrypted: set key_passphrase (or add the key to ssh-agent and leave key unset)", p.cfg.Key)
		case err != nil:
			// The error never holds the passphrase, only why it failed.
			return nil, nil, fmt.Errorf("ssh: key %s: %w", p.cfg.Key, err)
		}
		return []ssh.AuthMethod{ssh.PublicKeys(signer)}, func() {}, nil
	}
	// No key set: the IdentityFiles ~/.ssh/config names for the host, then
	// the agent's keys, as ssh tries them. An encrypted IdentityFile is
	// usable only through the agent (key_passphrase belongs to key).
	var files []ssh.Signer
	var skipped []string // why each named IdentityFile was not used
	for _, name := range identities {
		pem, err := os.ReadFile(name)
		if err == nil {
			var signer ssh.Signer
			if signer, err = ssh.ParsePrivateKey(pem); err == nil {
				files = append(files, signer)
				continue
			}
		}
		p.logger.Debug("identity file skipped", "file", name, "err", err)
		// Why it failed, never key material: os and ssh errors name the
		// file or the problem (an encrypted key says so), not its content.
		skipped = append(skipped, fmt.Sprintf("%s: %v", name, err))
	}
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" && len(files) == 0 {
		if len(skipped) > 0 {
			return nil, nil, fmt.Errorf("ssh: no usable key: ssh_config's IdentityFiles were skipped (%s); set key (with key_passphrase if it is encrypted) or run ssh-agent", strings.Join(skipped, "; "))
		}
		return nil, nil, errors.New("ssh: no key: set key, name an IdentityFile in ssh_config, or run ssh-agent ($SSH_AUTH_SOCK is unset)")
	}
	var agentConns []net.Conn
	release := func() {
		for _, c := range agentConns {
			c.Close()
		}
	}
	return []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		if sock == "" {
			return files, nil
		}
		// The agent is asked at each handshake so a restarted agent, or
		// a key added since, is picked up.
		conn, err := net.Dial("unix", sock)
		if err != nil {
			if len(files) > 0 {
				return files, nil
			}
			return nil, fmt.Errorf("ssh-agent: %w", err)
		}
		// Agent signers sign through conn: it stays open for the
		// handshake, which closes it (release) when done.
		agentConns = append(agentConns, conn)
		signers, err := agent.NewClient(conn).Signers()
		if err != nil && len(files) == 0 {
			return nil, fmt.Errorf("ssh-agent: %w", err)
		}
		return append(slices.Clip(files), signers...), nil
	})}, release, nil
}

// knownHostsPath is the configured file or ~/.ssh/known_hosts.
func (p *pool) knownHostsPath() string {
	if p.cfg.KnownHosts != "" {
		return p.cfg.KnownHosts
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".ssh", "known_hosts")
}

// tofuMu serialises appends to known_hosts across hosts dialled at once.
var tofuMu sync.Mutex

// hostKeyCallback checks a host's key against known_hosts. The file is read
// at each dial so a key recorded by trust-on-first-use (or by the operator)
// counts from the next connection on. A key that differs from a recorded
// one is always refused; an unknown key is refused unless
// trust_on_first_use is set, in which case it is recorded with a warning.
func (p *pool) hostKeyCallback() ssh.HostKeyCallback {
	path := p.knownHostsPath()
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		check, err := knownhosts.New(path)
		if err != nil {
			if !(p.cfg.TrustOnFirstUse && errors.Is(err, os.ErrNotExist)) {
				return fmt.Errorf("known_hosts: %w", err)
			}
			check = func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }
		}
		err = check(hostname, remote, key)
		var ke *knownhosts.KeyError
		if err == nil || !errors.As(err, &ke) {
			return err
		}
		if len(ke.Want) > 0 {
			return fmt.Errorf("host key of %s does not match %s (possible man-in-the-middle; if the host was reinstalled, remove its old line): %w", hostname, path, err)
		}
		if !p.cfg.TrustOnFirstUse {
			return fmt.Errorf("host %s is not in %s (add its key, or set trust_on_first_use = true): %w", hostname, path, err)
		}
		if err := appendKnownHost(path, hostname, key); err != nil {
			return fmt.Errorf("trust on first use: record key of %s: %w", hostname, err)
		}
		p.logger.Warn("trusting host key on first use and recording it", "host", hostname,
			"key_type", key.Type(), "fingerprint", ssh.FingerprintSHA256(key), "known_hosts", path)
		return nil
	}
}

func appendKnownHost(path, hostname string, key ssh.PublicKey) error {
	tofuMu.Lock()
	defer tofuMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key) + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// RemoteError is a remote command that failed, with what it wrote to
// stderr (commands never carry secrets, so this is safe to show).
type RemoteError struct {
	Host   string
	Cmd    string
	Stderr string
	Err    error
}

func (e *RemoteError) Error() string {
	msg := fmt.Sprintf("ssh: %s: %s: %v", e.Host, e.Cmd, e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *RemoteError) Unwrap() error { return e.Err }

// run executes cmd (built with command) on the host and returns its stdout.
// Cancelling ctx closes the session.
func (c *hostConn) run(ctx context.Context, cmd string) (string, error) {
	sess, err := c.client.NewSession()
	if err != nil {
		return "", fmt.Errorf("ssh: %s: new session: %w", c.addr, err)
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		sess.Close()
		return "", fmt.Errorf("ssh: %s: %s: %w", c.addr, cmd, ctx.Err())
	}
	if err != nil {
		return stdout.String(), &RemoteError{Host: c.addr, Cmd: cmd, Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
}
