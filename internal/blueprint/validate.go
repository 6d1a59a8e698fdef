package blueprint

import (
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	versionRE  = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	portNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$`)
	sha256RE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	decimalRE  = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
)

// ReservedEnv returns the environment variables the manager sets for every
// instance (the Blueprint SDK's runner reads them), so a manifest may not set
// them: a manifest that overrode SERVICE_ID or BRIDGE_SOCKET_PATH would make
// an instance talk as someone else. A fresh slice each call, so no caller can
// change the rule for the others.
func ReservedEnv() []string {
	return []string{
		"BLUEPRINT_ID", "SERVICE_ID", "DATA_DIR", "BRIDGE_SOCKET_PATH",
		"KEYSTORE_URI", "KMS_URL", "PROTOCOL", "CHAIN",
		"HTTP_RPC_URL", "WS_RPC_URL", "BOOTNODES",
		"TANGLE_CONTRACT", "STAKING_CONTRACT", "STATUS_REGISTRY_CONTRACT",
		"REGISTRATION_MODE_ON", "REGISTRATION_OUTPUT_PATH", "REGISTRATION_CAPTURE_ONLY",
	}
}

// IsReservedEnv reports whether name is one of ReservedEnv.
func IsReservedEnv(name string) bool { return slices.Contains(ReservedEnv(), name) }

// problems collects validation problems in manifest order.
type problems []Problem

func (ps *problems) add(field, format string, args ...any) {
	*ps = append(*ps, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Validate checks every rule and reports all broken ones at once as a
// *ValidationError. It checks the manifest as it stands: Parse fills in
// defaults (port protocol, health interval and timeout) before calling it.
func (m *Manifest) Validate() error {
	var ps problems
	switch {
	case m.Name == "":
		ps.add("name", "required")
	case !nameRE.MatchString(m.Name):
		ps.add("name", "%q must be 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", m.Name)
	}
	switch {
	case m.Version == "":
		ps.add("version", "required")
	case !versionRE.MatchString(m.Version):
		ps.add("version", "%q is not a semantic version like \"1.2.3\"", m.Version)
	}
	if len(m.Sources) == 0 {
		ps.add("sources", "at least one source is required")
	}
	for i, s := range m.Sources {
		s.validate(&ps, fmt.Sprintf("sources[%d]", i))
	}
	m.Resources.validate(&ps)
	switch m.Isolation {
	case "", IsolationNone, IsolationVM:
	default:
		ps.add("isolation", "%q is not one of none, vm", m.Isolation)
	}
	m.validatePorts(&ps)
	m.validateEnv(&ps)
	m.validateHealth(&ps)
	if len(ps) == 0 {
		return nil
	}
	return &ValidationError{Problems: ps}
}

func (s Source) validate(ps *problems, f string) {
	// notFor reports the fields set that belong to another kind; silently
	// ignoring them would hide a manifest that says something it doesn't do.
	notFor := func(image, binaries, dir bool) {
		if image && s.Image != "" {
			ps.add(f+".image", "not allowed for %s sources", s.Kind)
		}
		if binaries && len(s.Binaries) > 0 {
			ps.add(f+".binaries", "not allowed for %s sources", s.Kind)
		}
		if dir && s.Dir != "" {
			ps.add(f+".dir", "not allowed for %s sources", s.Kind)
		}
		if image && s.Archive != "" {
			ps.add(f+".archive", "not allowed for %s sources", s.Kind)
		}
	}
	switch s.Kind {
	case "":
		ps.add(f+".kind", "required (container, native or testing)")
	case "wasm":
		ps.add(f+".kind", "wasm sources are reserved and not supported")
	case SourceContainer:
		switch {
		case s.Image == "":
			ps.add(f+".image", "required for container sources")
		case strings.IndexFunc(s.Image, unicode.IsSpace) >= 0:
			ps.add(f+".image", "%q must not contain whitespace", s.Image)
		case strings.Contains(s.Image, "://"):
			ps.add(f+".image", "%q must be an image reference, not a URL", s.Image)
		}
		if a := s.Archive; a != "" && (filepath.IsAbs(a) || !filepath.IsLocal(a)) {
			ps.add(f+".archive", "%q must be a path inside the package directory", a)
		}
		notFor(false, true, true)
	case SourceNative:
		if len(s.Binaries) == 0 {
			ps.add(f+".binaries", "at least one binary is required for native sources")
		}
		seen := map[string]int{}
		for j, b := range s.Binaries {
			bf := fmt.Sprintf("%s.binaries[%d]", f, j)
			b.validate(ps, bf)
			if b.OS != "" && b.Arch != "" {
				plat := b.OS + "/" + b.Arch
				if k, dup := seen[plat]; dup {
					ps.add(bf, "second binary for %s (first is binaries[%d])", plat, k)
				} else {
					seen[plat] = j
				}
			}
		}
		notFor(true, false, true)
	case SourceTesting:
		if s.Dir == "" {
			ps.add(f+".dir", "required for testing sources")
		}
		notFor(true, true, false)
	default:
		ps.add(f+".kind", "unknown kind %q (want container, native or testing)", s.Kind)
	}
}

func (b Binary) validate(ps *problems, f string) {
	switch {
	case b.OS == "":
		ps.add(f+".os", "required")
	case !knownGOOS(b.OS):
		ps.add(f+".os", "unknown os %q (use Go's GOOS spelling, e.g. linux, darwin)", b.OS)
	}
	switch {
	case b.Arch == "":
		ps.add(f+".arch", "required")
	case !knownGOARCH(b.Arch):
		ps.add(f+".arch", "unknown arch %q (use Go's GOARCH spelling, e.g. amd64, arm64)", b.Arch)
	}
	switch {
	case b.Path == "" && b.URL == "":
		ps.add(f, "one of path or url is required")
	case b.Path != "" && b.URL != "":
		ps.add(f, "path and url are mutually exclusive")
	case b.URL != "":
		if msg := checkURL(b.URL); msg != "" {
			ps.add(f+".url", "%s", msg)
		}
	}
	switch {
	case b.SHA256 == "":
		ps.add(f+".sha256", "required")
	case !sha256RE.MatchString(b.SHA256):
		ps.add(f+".sha256", "must be 64 hex characters")
	}
}

func checkURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "not a valid URL"
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "scheme must be http or https"
	}
	if u.Host == "" {
		return "host is required"
	}
	if u.User != nil {
		// Credentials belong in the keystore or env, never in a manifest
		// that is copied around and printed.
		return "must not contain credentials"
	}
	return ""
}

func (r Resources) validate(ps *problems) {
	if r.CPU != "" {
		if v, err := ParseCPU(r.CPU); err != nil {
			ps.add("resources.cpu", "%v", err)
		} else if v == 0 {
			ps.add("resources.cpu", "must be greater than 0")
		}
	}
	for _, q := range []struct{ field, val string }{{"resources.memory", r.Memory}, {"resources.storage", r.Storage}} {
		if q.val == "" {
			continue
		}
		if v, err := ParseBytes(q.val); err != nil {
			ps.add(q.field, "%v", err)
		} else if v == 0 {
			ps.add(q.field, "must be greater than 0")
		}
	}
	if r.GPU < 0 {
		ps.add("resources.gpu", "must not be negative")
	}
}

func (m *Manifest) validatePorts(ps *problems) {
	names := map[string]int{}
	numbers := map[string]int{}
	for i, p := range m.Ports {
		f := fmt.Sprintf("ports[%d]", i)
		switch {
		case p.Name == "":
			ps.add(f+".name", "required")
		case !portNameRE.MatchString(p.Name):
			// Remote providers turn port names into Kubernetes port names.
			ps.add(f+".name", "%q must be at most 15 lowercase letters, digits or '-', not starting or ending with '-'", p.Name)
		default:
			if k, dup := names[p.Name]; dup {
				ps.add(f+".name", "%q is already used by ports[%d]", p.Name, k)
			} else {
				names[p.Name] = i
			}
		}
		if p.Port < 1 || p.Port > 65535 {
			ps.add(f+".port", "%d is out of range 1-65535", p.Port)
		}
		switch p.Protocol {
		case "tcp", "udp":
			key := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
			if k, dup := numbers[key]; dup {
				ps.add(f+".port", "%s is already used by ports[%d]", key, k)
			} else {
				numbers[key] = i
			}
		default:
			ps.add(f+".protocol", "%q must be tcp or udp", p.Protocol)
		}
	}
}

func (m *Manifest) validateEnv(ps *problems) {
	// Sorted so the report does not change from run to run.
	keys := make([]string, 0, len(m.Env))
	for k := range m.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f := fmt.Sprintf("env.%s", k)
		if !envNameRE.MatchString(k) {
			ps.add(fmt.Sprintf("env[%q]", k), "not a valid environment variable name")
			continue
		}
		if IsReservedEnv(k) {
			ps.add(f, "reserved: the manager sets it for every instance")
		}
	}
}

func (m *Manifest) validateHealth(ps *problems) {
	h := m.Health
	if h == nil {
		return
	}
	switch {
	case h.HTTP == "" && !h.TCP:
		ps.add("health", "one of http or tcp is required")
	case h.HTTP != "" && h.TCP:
		ps.add("health", "http and tcp are mutually exclusive")
	case h.HTTP != "" && !strings.HasPrefix(h.HTTP, "/"):
		ps.add("health.http", "%q must be a path starting with /", h.HTTP)
	}
	if h.Port != "" {
		p, ok := m.port(h.Port)
		switch {
		case !ok:
			ps.add("health.port", "no port named %q", h.Port)
		case p.Protocol != "tcp":
			ps.add("health.port", "port %q is %s; health checks need a tcp port", h.Port, p.Protocol)
		}
	} else if _, ok := m.HealthPort(); !ok {
		ps.add("health", "needs a tcp port, and ports has none")
	}
	if h.Interval.Duration <= 0 {
		ps.add("health.interval", "must be greater than 0")
	}
	if h.Timeout.Duration <= 0 {
		ps.add("health.timeout", "must be greater than 0")
	}
	if h.Interval.Duration > 0 && h.Timeout.Duration >= h.Interval.Duration {
		ps.add("health.timeout", "%s must be shorter than interval %s", h.Timeout.Duration, h.Interval.Duration)
	}
}

func (m *Manifest) port(name string) (Port, bool) {
	for _, p := range m.Ports {
		if p.Name == name {
			return p, true
		}
	}
	return Port{}, false
}

// HealthPort is the port the health check connects to: the named one, or
// the first tcp port. ok is false when there is no health check or no such
// port.
func (m *Manifest) HealthPort() (p Port, ok bool) {
	if m.Health == nil {
		return Port{}, false
	}
	if m.Health.Port != "" {
		p, ok := m.port(m.Health.Port)
		return p, ok && p.Protocol == "tcp"
	}
	for _, p := range m.Ports {
		if p.Protocol == "tcp" || p.Protocol == "" {
			return p, true
		}
	}
	return Port{}, false
}

// maxQuantityLen keeps big.Rat arithmetic on quantities trivially cheap.
const maxQuantityLen = 32

// ParseCPU parses a CPU quantity in cores ("2", "0.5") or millicores
// ("500m"), Kubernetes style, and returns millicores. Finer than one
// millicore is an error rather than silently rounded.
func ParseCPU(s string) (int64, error) {
	num, scale := s, big.NewRat(1000, 1)
	if rest, ok := strings.CutSuffix(s, "m"); ok {
		num, scale = rest, big.NewRat(1, 1)
	}
	v, err := scaleDecimal(num, scale)
	if errors.Is(err, errNotWhole) {
		return 0, fmt.Errorf("cpu %q: finer than one millicore", s)
	}
	if err != nil {
		return 0, fmt.Errorf("cpu %q: %w (want cores like \"0.5\" or millicores like \"500m\")", s, err)
	}
	return v, nil
}

// ParseBytes parses a byte quantity: a plain number of bytes, or a number
// with a Kubernetes suffix, binary (Ki, Mi, Gi, Ti, Pi, Ei) or decimal
// (k, M, G, T, P, E). "1.5Gi" is fine; a fraction of a byte is not.
func ParseBytes(s string) (int64, error) {
	num, unit := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50}, {"Ei", 1 << 60},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {"E", 1e18},
	} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			num, unit = rest, u.mult
			break
		}
	}
	v, err := scaleDecimal(num, big.NewRat(unit, 1))
	if errors.Is(err, errNotWhole) {
		return 0, fmt.Errorf("size %q: not a whole number of bytes", s)
	}
	if err != nil {
		return 0, fmt.Errorf("size %q: %w (want bytes like \"1048576\", \"512Mi\" or \"1G\")", s, err)
	}
	return v, nil
}

var errNotWhole = errors.New("not whole")

// scaleDecimal returns num*scale for a plain non-negative decimal num,
// refusing anything that is not a whole int64.
func scaleDecimal(num string, scale *big.Rat) (int64, error) {
	if len(num) > maxQuantityLen || !decimalRE.MatchString(num) {
		return 0, errors.New("not a number")
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, errors.New("not a number")
	}
	r.Mul(r, scale)
	if !r.IsInt() {
		return 0, errNotWhole
	}
	n := r.Num()
	if !n.IsInt64() {
		return 0, errors.New("too large")
	}
	return n.Int64(), nil
}

// knownGOOS and knownGOARCH are `go tool dist list` as of Go 1.26. Written
// as switches so the list cannot be changed at run time.
func knownGOOS(s string) bool {
	switch s {
	case "aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js",
		"linux", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows":
		return true
	}
	return false
}

func knownGOARCH(s string) bool {
	switch s {
	case "386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle",
		"ppc64", "ppc64le", "riscv64", "s390x", "wasm":
		return true
	}
	return false
}
