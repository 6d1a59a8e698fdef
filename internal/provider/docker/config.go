package docker

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/bpm-project/bpm/internal/config"
)

// Type is the provider's registry name.
const Type = "docker"

// Config is a [remote.NAME] section of type "docker".
type Config struct {
	Type string `toml:"type"`
	// Endpoint is the Docker API: unix:///path, tcp://host:port (TLS
	// required unless insecure), https://host for a hosted API, or
	// ssh://user@host. Empty means $DOCKER_HOST, else the local socket.
	Endpoint string `toml:"endpoint"`
	// CA, Cert and Key are PEM files for TLS: CA verifies the daemon, Cert
	// and Key authenticate bpm to it (docker's --tlscacert, --tlscert,
	// --tlskey).
	CA   string `toml:"ca" path:"true"`
	Cert string `toml:"cert" path:"true"`
	Key  string `toml:"key" path:"true"`
	// Insecure allows tcp:// or http:// without TLS. Only for an endpoint
	// reached over an already-encrypted link; a secret never travels on it.
	Insecure bool `toml:"insecure"`
	// AuthToken is a bearer token for hosted Docker-compatible APIs.
	AuthToken config.Secret `toml:"auth_token" secret:"true"`
	// Organization is the account or organisation on a hosted API.
	Organization string `toml:"organization"`
	// MaxInstances caps how many instances bpm runs here; 0 means no cap.
	MaxInstances int `toml:"max_instances"`
	// ImageArchives maps an image reference to an archive (docker save or
	// OCI layout) that is loaded when the engine lacks the image, for
	// engines that cannot reach a registry.
	ImageArchives map[string]string `toml:"image_archives" path:"true"`
	// Resources caps what one instance may use and how many run here.
	Resources config.Resources `toml:"resources"`

	Regions Regions       `toml:"regions"`
	Tunnel  config.Tunnel `toml:"tunnel"`
	// Pricing is how bpm prices instances here (see docs/COST.md).
	Pricing config.Pricing `toml:"pricing"`
}

// Regions is the [remote.NAME.regions] sub-table, for APIs that place
// containers in named regions.
type Regions struct {
	// Primary is where instances go by default.
	Primary string `toml:"primary"`
	// Replicas are further regions instances may be placed in.
	Replicas []string `toml:"replicas"`
	// Endpoints overrides Endpoint per region, for setups with one Docker
	// host per region.
	Endpoints map[string]string `toml:"endpoints"`
}

// NewConfig returns a config holding the defaults.
func NewConfig() *Config { return &Config{Type: Type} }

var regionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Validate reports every problem with the section.
func (c *Config) Validate() error {
	var fe config.FieldErrors
	c.checkEndpoint(&fe, "endpoint", c.Endpoint)
	hasTLSFiles := c.CA != "" || c.Cert != "" || c.Key != ""
	if (c.Cert == "") != (c.Key == "") {
		fe.Add("cert", "cert and key must be set together (the client certificate and its private key)")
	}
	if c.Insecure && hasTLSFiles {
		fe.Add("insecure", "insecure = true turns TLS off, but ca, cert or key is set; remove one or the other")
	}
	if strings.ContainsAny(c.Organization, " \t\r\n/") {
		fe.Add("organization", "%q: no whitespace or /", c.Organization)
	}
	if c.MaxInstances < 0 {
		fe.Add("max_instances", "%d: must be 0 (no cap) or more", c.MaxInstances)
	}

	r := c.Regions
	if r.Primary == "" && (len(r.Replicas) > 0 || len(r.Endpoints) > 0) {
		fe.Add("regions.primary", "must be set when replicas or endpoints are")
	}
	known := map[string]bool{}
	if r.Primary != "" {
		if !regionRE.MatchString(r.Primary) {
			fe.Add("regions.primary", "%q is not a region name (lowercase letters, digits, -)", r.Primary)
		}
		known[r.Primary] = true
	}
	for i, rep := range r.Replicas {
		key := fmt.Sprintf("regions.replicas[%d]", i)
		switch {
		case !regionRE.MatchString(rep):
			fe.Add(key, "%q is not a region name (lowercase letters, digits, -)", rep)
		case known[rep]:
			fe.Add(key, "region %q is listed twice", rep)
		}
		known[rep] = true
	}
	for _, region := range slices.Sorted(maps.Keys(r.Endpoints)) {
		key := "regions.endpoints." + region
		if !known[region] {
			fe.Add(key, "region %q is neither primary nor a replica", region)
		}
		c.checkEndpoint(&fe, key, r.Endpoints[region])
	}
	for _, ref := range slices.Sorted(maps.Keys(c.ImageArchives)) {
		if c.ImageArchives[ref] == "" {
			fe.Add("image_archives."+ref, "empty path")
		}
	}
	fe.Nest("resources", c.Resources.Validate())
	fe.Nest("tunnel", c.Tunnel.Validate())
	if c.Tunnel.PrivateKey != "" && c.Regions.Primary != "" {
		// As for ssh hosts: one gateway per region, one key each.
		fe.Add("tunnel.private_key", "a docker remote with regions runs a gateway per region, each with its own generated key; remove it")
	}
	fe.Nest("pricing", c.Pricing.Validate())
	return fe.Err()
}

// checkEndpoint enforces the transport rules: TLS-verified or local, never
// a token in clear text.
func (c *Config) checkEndpoint(fe *config.FieldErrors, key, ep string) {
	if ep == "" {
		if key != "endpoint" {
			fe.Add(key, "empty endpoint")
		}
		return
	}
	u, err := url.Parse(ep)
	if err != nil {
		fe.Add(key, "%q is not a URL (for example unix:///var/run/docker.sock or tcp://host:2376)", ep)
		return
	}
	if _, hasPass := u.User.Password(); hasPass && u.Scheme != "ssh" {
		// It would be printed wherever the endpoint is (errors, config
		// show) and is never sent: the token has its own, secret field.
		fe.Add(key, "a password in the endpoint URL is not used and would be shown in errors; put a bearer token in auth_token")
	}
	hasTLSFiles := c.CA != "" || c.Cert != "" || c.Key != ""
	// With regions, one engine may be local and another over TLS: the TLS
	// files then apply to the TCP ones only.
	misplacedTLS := hasTLSFiles && c.Regions.Primary == ""
	switch u.Scheme {
	case "unix":
		if u.Path == "" || !strings.HasPrefix(u.Path, "/") || u.Host != "" {
			fe.Add(key, "%q: write unix:///absolute/path", ep)
		}
		if misplacedTLS {
			fe.Add(key, "ca, cert and key apply to tcp:// and https:// endpoints, not %s://", u.Scheme)
		}
	case "ssh":
		if u.Host == "" {
			fe.Add(key, "%q: write ssh://user@host", ep)
		}
		if misplacedTLS {
			fe.Add(key, "ca, cert and key apply to tcp:// and https:// endpoints, not %s://", u.Scheme)
		}
	case "tcp", "http", "https":
		if u.Host == "" {
			fe.Add(key, "%q has no host", ep)
			return
		}
		if err := checkPort(u); err != nil {
			fe.Add(key, "%q: %s", ep, err)
		}
		plain := u.Scheme == "http" || (u.Scheme == "tcp" && !hasTLSFiles)
		switch {
		case plain && !c.Insecure:
			if u.Scheme == "http" {
				fe.Add(key, "%q is plain HTTP; use https:// (or set insecure = true for an already-encrypted link)", ep)
			} else {
				fe.Add(key, "%q has no TLS: set ca (and cert and key for client authentication), or insecure = true for an already-encrypted link", ep)
			}
		case plain && !c.AuthToken.IsZero():
			fe.Add("auth_token", "would be sent without TLS to %s; use https:// or TLS", ep)
		}
	default:
		fe.Add(key, "%q: scheme must be unix, tcp, https, http or ssh", ep)
	}
}

func checkPort(u *url.URL) error {
	if p := u.Port(); p != "" {
		return config.CheckHostPort(u.Host)
	}
	return nil
}

// PricingConfig exposes the [pricing] sub-table to the cost package
// without it importing this provider.
func (c *Config) PricingConfig() config.Pricing { return c.Pricing }
