package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
)

// Sentinel errors. Providers wrap them with %w so callers can use errors.Is
// without knowing which provider produced the error.
var (
	ErrNotFound    = errors.New("not found")
	ErrExists      = errors.New("already exists")
	ErrUnsupported = errors.New("not supported by this provider")
	ErrQuota       = errors.New("quota exceeded")
	ErrUnavailable = errors.New("target unavailable")
	// ErrNotAvailableYet marks a capability whose implementation lands in a
	// later release; the CLI maps it to its own exit code.
	ErrNotAvailableYet = errors.New("not available yet")
)

// State is an instance's lifecycle state as bpm records it.
type State string

// The lifecycle states. Pending is written before any side effect (intent
// first); Terminated is final.
const (
	StatePending     State = "pending"
	StateCreating    State = "creating"
	StateRunning     State = "running"
	StateDegraded    State = "degraded"
	StateFailed      State = "failed"
	StateTerminating State = "terminating"
	StateTerminated  State = "terminated"
)

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	switch s {
	case StatePending, StateCreating, StateRunning, StateDegraded, StateFailed, StateTerminating, StateTerminated:
		return true
	}
	return false
}

// Final reports whether an instance in state s no longer holds resources.
func (s State) Final() bool { return s == StateTerminated }

// DeployRequest is everything a provider needs to create one instance.
// Names and labels a provider creates must be derived from InstanceID alone so
// a retried deploy finds what an interrupted one made.
type DeployRequest struct {
	InstanceID  string // bp-<random>
	Remote      string // the remote's name in config; "local" for the default
	BlueprintID uint64
	ServiceID   uint64
	Package     *blueprint.Package
	// Env is the full environment for the service: the Blueprint SDK's
	// variables plus the manifest's env. Values may be secret; providers
	// never log or print them.
	Env map[string]string
	// Site is where a Sited provider's Place put the instance; "" for
	// providers with one gateway per remote.
	Site string
	// Region is the region the operator asked for (bpm deploy --region);
	// only a provider with regions accepts one, in Place.
	Region string
}

// Handle is the provider's opaque record of a created instance, persisted by
// the manager and handed back on every later call (Nomad's task handle).
type Handle []byte

// Ref identifies an existing instance to a provider.
type Ref struct {
	InstanceID string
	Remote     string
	Handle     Handle
}

// Status is what a provider observed about an instance.
type Status struct {
	State   State
	Message string // human-readable reason, never a secret
	// Address is where the instance answers (host:port) when known.
	Address  string
	Restarts int
	Since    time.Time
}

// Resources reports what a target has available.
type Resources struct {
	CPUMillis   int64 // available CPU in thousandths of a core
	MemoryBytes int64
	GPUs        int
	// Instances is how many more instances may be placed; -1 when unlimited.
	Instances int
}

// CostRequest asks what running a package on a remote would cost.
type CostRequest struct {
	Remote  string
	Package *blueprint.Package
}

// CostEstimate is a provider's price for one instance.
type CostEstimate struct {
	HourlyUSD float64
	Detail    string
}

// TunnelSpec is everything a remote's gateway needs to dial the hub: what
// `bpm gateway` reads from its BPM_GATEWAY_* variables. GatewayPrivateKey
// is a secret: a provider hands it to the gateway only through what the
// platform keeps for it (a Kubernetes Secret, a 0600 file over SFTP, the
// container's env on a Docker engine, readable by whoever can drive that
// engine), never on a command line or in a label, and never logs it.
type TunnelSpec struct {
	Remote string
	// Site is the gateway's site for a Sited provider ("" for the remote's
	// only gateway): each site's gateway is its own hub peer, with its own
	// key and tunnel address.
	Site         string
	HubEndpoint  string // host:port the gateway dials
	HubPublicKey string // WireGuard base64
	HubAddress   string // the hub's tunnel address, e.g. 10.77.0.1
	// GatewayAddress is the gateway's tunnel address with the tunnel
	// network's prefix length, e.g. 10.77.0.3/16.
	GatewayAddress    string
	GatewayPrivateKey string
	MTU               int
	Keepalive         time.Duration
}

// Format prints the spec with its private key redacted, so a spec that
// reaches a log line or an error through %v cannot leak the key.
func (s TunnelSpec) Format(f fmt.State, _ rune) {
	if s.GatewayPrivateKey != "" {
		s.GatewayPrivateKey = "REDACTED"
	}
	type plain TunnelSpec // no Format method: no recursion
	fmt.Fprintf(f, "%+v", plain(s))
}

// LogValue redacts the private key for slog.
func (s TunnelSpec) LogValue() slog.Value { return slog.StringValue(fmt.Sprint(s)) }

// GatewayEnv is spec as the environment `bpm gateway` reads. It holds the
// private key: pass it only through a secret object.
func (s TunnelSpec) GatewayEnv() map[string]string {
	env := map[string]string{
		"BPM_GATEWAY_HUB_ENDPOINT":   s.HubEndpoint,
		"BPM_GATEWAY_HUB_PUBLIC_KEY": s.HubPublicKey,
		"BPM_GATEWAY_HUB_ADDRESS":    s.HubAddress,
		"BPM_GATEWAY_ADDRESS":        s.GatewayAddress,
		"BPM_GATEWAY_PRIVATE_KEY":    s.GatewayPrivateKey,
	}
	if s.MTU > 0 {
		env["BPM_GATEWAY_MTU"] = strconv.Itoa(s.MTU)
	}
	return env
}

// TunnelInfo reports a remote's gateway once its tunnel is up.
type TunnelInfo struct {
	GatewayAddress string
}

// Provider is the core every provider implements. Every method takes ctx first
// and must be safe for concurrent use.
type Provider interface {
	// Type is the registry name ("local", "docker", ...).
	Type() string
	// Deploy creates the instance. It is idempotent: deploying an instance id
	// that already exists returns its handle and ErrExists is never returned
	// for the same request.
	Deploy(ctx context.Context, req DeployRequest) (Handle, error)
	// Status reports the instance's current state; ErrNotFound when the
	// target has no trace of it.
	Status(ctx context.Context, ref Ref) (Status, error)
	// Terminate stops the instance and frees everything it held. Terminating
	// an instance that is already gone succeeds.
	Terminate(ctx context.Context, ref Ref) error
	// Resources reports what the target can still take.
	Resources(ctx context.Context) (Resources, error)
	// EstimateCost prices one instance of the package on this target.
	EstimateCost(ctx context.Context, req CostRequest) (CostEstimate, error)
	// EstablishTunnel makes sure the remote's gateway exists and its tunnel
	// is up. Providers with no tunnel (local) return ErrUnsupported.
	EstablishTunnel(ctx context.Context, spec TunnelSpec) (TunnelInfo, error)
}

// Sited is implemented by providers whose remote spans several places that
// cannot reach each other's instances — SSH hosts whose services bind to
// loopback, regions — so each place ("site") runs its own gateway, as
// DESIGN.md puts it: one gateway per cluster, Docker host, SSH host or
// region. Place picks the site of a new instance before its tunnel is
// established; Deploy then gets it in DeployRequest.Site and EstablishTunnel
// in TunnelSpec.Site. A site name matches SiteRE.
type Sited interface {
	Place(ctx context.Context, req DeployRequest) (site string, err error)
}

// Accepter is implemented by providers that can tell from the package
// alone that they cannot run it (no container source; an isolation they
// cannot give). The manager asks before it records anything, so such a
// deploy changes nothing — no row, no hub peer, no gateway. Deploy still
// checks again.
type Accepter interface {
	Accepts(pkg *blueprint.Package) error
}

// Regional is implemented by providers whose remote has named regions
// ([remote.NAME.regions]); Regions lists them, primary first. A deploy may
// name one (DeployRequest.Region); the provider places it there.
type Regional interface {
	Regions() []string
}

// SiteRE is the spelling of a site name: short, lower case, safe in
// keystore names, labels and paths.
var SiteRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// PeerName is the hub peer (and route gateway) name of remote's site:
// the remote's own name for its only gateway, "REMOTE.SITE" otherwise.
// Remote names have no dots, so the two never collide.
func PeerName(remote, site string) string {
	if site == "" {
		return remote
	}
	return remote + "." + site
}

// SplitPeerName undoes PeerName.
func SplitPeerName(peer string) (remote, site string) {
	remote, site, _ = strings.Cut(peer, ".")
	return remote, site
}

// LogOptions selects what Logs returns.
type LogOptions struct {
	Follow bool
	Tail   int // last N lines; 0 means all
}

// Logser is implemented by providers that can stream an instance's output.
type Logser interface {
	Logs(ctx context.Context, ref Ref, opts LogOptions, w io.Writer) error
}

// Owned is one instance found on a target by its ownership labels.
type Owned struct {
	InstanceID string
	Handle     Handle
	State      State
}

// Lister is implemented by providers that can list the instances they own on
// their target, which the manager's reconcile uses to adopt and clean up.
type Lister interface {
	ListOwned(ctx context.Context) ([]Owned, error)
}

// Closer is implemented by providers that hold connections.
type Closer interface {
	Close() error
}
