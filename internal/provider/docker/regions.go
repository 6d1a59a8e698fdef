package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/bridge"
	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/health"
	"github.com/bpm-project/bpm/internal/provider"
)

// Regions. A docker remote with [remote.NAME.regions] is one engine per
// region: regions.endpoints names each region's engine (the remote's
// endpoint when it names none), and each region is a site (provider.Sited)
// with its own gateway and hub peer, since one engine's private network
// does not reach another's. Internally it is one Provider per region,
// built as for a remote of its own named REMOTE.REGION (provider.PeerName),
// so each region's containers, network, bridge volume and gateway carry
// that name. A deploy goes to the region it names (bpm deploy --region),
// else to the primary; max_instances caps the remote as a whole.

// regional is the provider of a docker remote with regions.
type regional struct {
	remote  string
	cfg     *Config
	order   []string // primary first, then the replicas in config order
	regions map[string]*Provider
	// mu serialises the max_instances count with the deploy it admits,
	// across regions.
	mu sync.Mutex
}

var (
	_ provider.Provider = (*regional)(nil)
	_ provider.Sited    = (*regional)(nil)
	_ provider.Regional = (*regional)(nil)
	_ provider.Logser   = (*regional)(nil)
	_ provider.Lister   = (*regional)(nil)
	_ provider.Closer   = (*regional)(nil)
)

// newRegional builds a region Provider per region. check, when set, runs
// health checks through the region's gateway.
func newRegionalProvider(remote string, c *Config, opts Options, check func(ctx context.Context, site string, spec health.Spec) error) (*regional, error) {
	r := &regional{remote: remote, cfg: c, regions: map[string]*Provider{}}
	r.order = append([]string{c.Regions.Primary}, c.Regions.Replicas...)
	for _, name := range r.order {
		rc := *c
		if ep := c.Regions.Endpoints[name]; ep != "" {
			rc.Endpoint = ep
		}
		rc.Regions = Regions{}
		// The remote's cap is counted over every region (Deploy).
		rc.MaxInstances, rc.Resources.MaxInstances = 0, 0
		o := opts
		if check != nil {
			region := name
			o.Check = func(ctx context.Context, spec health.Spec) error { return check(ctx, region, spec) }
		}
		p, err := New(provider.PeerName(remote, name), &rc, o)
		if err != nil {
			return nil, fmt.Errorf("region %s: %w", name, err)
		}
		r.regions[name] = p
	}
	return r, nil
}

func (r *regional) Type() string { return Type }

// Accepts is every region's: one engine's rules.
func (r *regional) Accepts(pkg *blueprint.Package) error { return r.regions[r.order[0]].Accepts(pkg) }

// Regions lists the regions, primary first.
func (r *regional) Regions() []string { return append([]string(nil), r.order...) }

// Place puts the instance in the region the deploy names, else the
// primary. The manager checked the name against Regions already.
func (r *regional) Place(_ context.Context, req provider.DeployRequest) (string, error) {
	if req.Region == "" {
		return r.order[0], nil
	}
	if _, ok := r.regions[req.Region]; !ok {
		return "", fmt.Errorf("docker: region %q: not one of %v: %w", req.Region, r.order, provider.ErrNotFound)
	}
	return req.Region, nil
}

// regionHandle is the handle of an instance in a region: the region and
// the region provider's own handle.
type regionHandle struct {
	Region string          `json:"region"`
	Docker json.RawMessage `json:"docker"`
}

func wrapHandle(region string, h provider.Handle) provider.Handle {
	b, _ := json.Marshal(regionHandle{Region: region, Docker: json.RawMessage(h)})
	return b
}

// locate finds the region of ref: from its handle, else by asking each
// region's engine (a deploy interrupted before its handle was recorded).
// It returns the region provider and the ref that provider understands.
func (r *regional) locate(ctx context.Context, ref provider.Ref) (*Provider, provider.Ref, error) {
	if len(ref.Handle) > 0 {
		var h regionHandle
		if err := json.Unmarshal(ref.Handle, &h); err == nil && h.Region != "" {
			p, ok := r.regions[h.Region]
			if !ok {
				return nil, ref, fmt.Errorf("docker: %s: region %q is no longer configured: %w", ref.InstanceID, h.Region, provider.ErrNotFound)
			}
			ref.Handle = provider.Handle(h.Docker)
			return p, ref, nil
		}
	}
	ref.Handle = nil
	var errs []error
	for _, name := range r.order {
		ok, err := r.regions[name].Owns(ctx, ref.InstanceID)
		if err != nil {
			errs = append(errs, fmt.Errorf("region %s: %w", name, err))
			continue
		}
		if ok {
			return r.regions[name], ref, nil
		}
	}
	if len(errs) > 0 {
		// A region that cannot answer may hold it: not "gone".
		return nil, ref, fmt.Errorf("docker: %s: %w: %w", ref.InstanceID, provider.ErrUnavailable, errors.Join(errs...))
	}
	return nil, ref, fmt.Errorf("docker: %s: in no region: %w", ref.InstanceID, provider.ErrNotFound)
}

// Deploy creates the instance in its site's region (the primary, or the
// region asked for, when called without Place).
func (r *regional) Deploy(ctx context.Context, req provider.DeployRequest) (provider.Handle, error) {
	region := req.Site
	if region == "" {
		var err error
		if region, err = r.Place(ctx, req); err != nil {
			return nil, err
		}
	}
	p, ok := r.regions[region]
	if !ok {
		return nil, fmt.Errorf("docker: deploy %s: region %q is not configured", req.InstanceID, region)
	}
	if limit := maxInstances(r.cfg); limit > 0 {
		// The count and the deploy it admits, across regions; without a
		// cap, deploys to different regions do not wait for each other.
		r.mu.Lock()
		defer r.mu.Unlock()
		owned, err := r.ListOwned(ctx)
		if err != nil {
			return nil, fmt.Errorf("docker: deploy %s: count instances: %w", req.InstanceID, err)
		}
		if n := len(owned) - count(owned, req.InstanceID); n >= limit {
			return nil, fmt.Errorf("docker: deploy %s: remote %s runs %d of max_instances %d: %w", req.InstanceID, r.remote, n, limit, provider.ErrQuota)
		}
	}
	h, err := p.Deploy(ctx, req)
	if err != nil {
		return nil, err
	}
	return wrapHandle(region, h), nil
}

func (r *regional) Status(ctx context.Context, ref provider.Ref) (provider.Status, error) {
	p, ref, err := r.locate(ctx, ref)
	if err != nil {
		return provider.Status{}, err
	}
	return p.Status(ctx, ref)
}

// Terminate removes the instance from its region; one in no region is
// gone already.
func (r *regional) Terminate(ctx context.Context, ref provider.Ref) error {
	p, ref, err := r.locate(ctx, ref)
	if errors.Is(err, provider.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return p.Terminate(ctx, ref)
}

func (r *regional) Logs(ctx context.Context, ref provider.Ref, opts provider.LogOptions, w io.Writer) error {
	p, ref, err := r.locate(ctx, ref)
	if err != nil {
		return err
	}
	return p.Logs(ctx, ref, opts, w)
}

// ListOwned lists every region's instances, with handles naming the region.
func (r *regional) ListOwned(ctx context.Context) ([]provider.Owned, error) {
	var out []provider.Owned
	for _, name := range r.order {
		owned, err := r.regions[name].ListOwned(ctx)
		if err != nil {
			return nil, fmt.Errorf("region %s: %w", name, err)
		}
		for _, o := range owned {
			o.Handle = wrapHandle(name, o.Handle)
			out = append(out, o)
		}
	}
	return out, nil
}

// Resources adds up the regions'; the instance count is the remote's cap
// minus what runs, or unlimited.
func (r *regional) Resources(ctx context.Context) (provider.Resources, error) {
	var sum provider.Resources
	for _, name := range r.order {
		res, err := r.regions[name].Resources(ctx)
		if err != nil {
			return provider.Resources{}, fmt.Errorf("region %s: %w", name, err)
		}
		sum.CPUMillis += res.CPUMillis
		sum.MemoryBytes += res.MemoryBytes
		sum.GPUs += res.GPUs
	}
	sum.Instances = -1
	if limit := maxInstances(r.cfg); limit > 0 {
		owned, err := r.ListOwned(ctx)
		if err != nil {
			return provider.Resources{}, err
		}
		sum.Instances = max(limit-len(owned), 0)
	}
	return sum, nil
}

func (r *regional) EstimateCost(ctx context.Context, req provider.CostRequest) (provider.CostEstimate, error) {
	return r.regions[r.order[0]].EstimateCost(ctx, req)
}

// EstablishTunnel runs the gateway of the spec's site (a region).
func (r *regional) EstablishTunnel(ctx context.Context, spec provider.TunnelSpec) (provider.TunnelInfo, error) {
	region := spec.Site
	if region == "" {
		region = r.order[0]
	}
	p, ok := r.regions[region]
	if !ok {
		return provider.TunnelInfo{}, fmt.Errorf("docker: tunnel: region %q is not configured", region)
	}
	return p.EstablishTunnel(ctx, spec)
}

// BridgeSocketPath is the same in every region (see Provider's).
func (r *regional) BridgeSocketPath(blueprintID, serviceID uint64) string {
	return bridge.SocketPath(gateway.BridgeDir, blueprintID, serviceID)
}

func (r *regional) Close() error {
	for _, p := range r.regions {
		p.Close()
	}
	return nil
}
