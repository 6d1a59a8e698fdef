package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/crashpoint"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/state"
)

// Deploy loads and validates the package, records the instance as pending
// (intent first), then asks the remote's provider to create it. Any failure
// after the intent row leaves the row in state failed with the reason.
func (m *Manager) Deploy(ctx context.Context, req api.DeployRequest) (api.Instance, error) {
	if req.PackagePath == "" {
		return api.Instance{}, api.Invalid("package_path is required")
	}
	if err := m.checkRemoteConfig(req.RemoteConfig); err != nil {
		return api.Instance{}, err
	}
	pkg, err := blueprint.Load(req.PackagePath)
	if err != nil {
		return api.Instance{}, fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	remote := req.Remote
	if remote == "" {
		remote = LocalRemote
	}
	p, err := m.providerFor(ctx, remote)
	if err != nil {
		return api.Instance{}, err
	}
	if a, ok := p.(provider.Accepter); ok {
		// A package the target cannot run records nothing: no row, no hub
		// peer, no gateway started for it.
		if err := a.Accepts(pkg); err != nil {
			return api.Instance{}, fmt.Errorf("%w: remote %s: %w", api.ErrInvalid, remote, err)
		}
	}
	if req.Region != "" {
		// Checked before the intent row: a bad region records nothing.
		rp, ok := p.(provider.Regional)
		if !ok {
			return api.Instance{}, api.Invalid("region %q: remote %s has no regions ([remote.%s.regions])", req.Region, remote, remote)
		}
		if !slices.Contains(rp.Regions(), req.Region) {
			return api.Instance{}, api.Invalid("region %q: remote %s has regions %s", req.Region, remote, strings.Join(rp.Regions(), ", "))
		}
	}
	bid := uint64(0)
	if pkg.Manifest.BlueprintID != nil {
		bid = *pkg.Manifest.BlueprintID
	}
	if req.BlueprintID != nil {
		bid = *req.BlueprintID
	}

	id := state.NewInstanceID()
	// cost: price it and check budgets before the intent row, so a refused
	// deploy records nothing (cost.go).
	hourly, err := m.costGate(ctx, req, remote, pkg)
	if err != nil {
		return api.Instance{}, err
	}
	m.setCostRate(id, hourly)
	// Held from before the intent row exists, so a reconcile or health pass
	// never sees this instance half-made.
	unlock := m.lockInstance(id)
	defer unlock()

	// Service ids are unique among all live instances: the registry and
	// the auth proxy route by them, and API keys belong to them. Choosing and recording the
	// id happens under one lock so two deploys cannot pick the same one.
	m.mu.Lock()
	sid, err := m.pickServiceID(ctx, req.ServiceID)
	if err != nil {
		m.mu.Unlock()
		return api.Instance{}, err
	}
	inst := state.Instance{
		ID:            id,
		Remote:        remote,
		ProviderType:  p.Type(),
		BlueprintName: pkg.Manifest.Name,
		BlueprintID:   bid,
		ServiceID:     sid,
		PackagePath:   pkg.Dir,
		State:         provider.StatePending,
	}
	err = m.create(ctx, inst)
	m.mu.Unlock()
	if err != nil {
		return api.Instance{}, fmt.Errorf("deploy: record intent: %w", err)
	}
	crashpoint.Hit("deploy/after-intent")
	log := m.log.With("instance", inst.ID, "remote", remote)
	log.Info("deploying", "blueprint", pkg.Manifest.Name, "service_id", sid)

	// The deploy itself must not be cut short by the client going away:
	// an abandoned half-deploy is exactly what intent-first prevents, but
	// finishing is better still.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	preq := provider.DeployRequest{
		InstanceID:  inst.ID,
		Remote:      remote,
		BlueprintID: bid,
		ServiceID:   sid,
		Package:     pkg,
		Region:      req.Region,
	}
	// A provider whose remote spans sites (SSH hosts) places the instance
	// first: the site decides which gateway, and so which hub peer, it
	// sits behind. Recorded before the tunnel, so the declarative peer set
	// (and a manager restarted in between) includes it.
	if sp, ok := p.(provider.Sited); ok {
		site, err := sp.Place(dctx, preq)
		if err == nil && site != "" && !provider.SiteRE.MatchString(site) {
			err = fmt.Errorf("provider %s placed the instance at an invalid site %q", p.Type(), site)
		}
		if err == nil {
			_, err = m.update(dctx, inst.ID, state.Update{Site: &site})
		}
		if err != nil {
			log.Warn("deploy failed: placement", "err", err)
			m.setState(dctx, inst.ID, provider.StateFailed, err.Error())
			return api.Instance{}, fmt.Errorf("deploy %s: %w", inst.ID, err)
		}
		preq.Site, inst.Site = site, site
		log = log.With("site", site)
	}
	if remote != LocalRemote {
		// The remote's peer must exist before its gateway can dial in. The
		// intent row is already live, so the declarative peer set
		// includes this remote.
		// Then the provider makes sure the remote's gateway runs and dials
		// in (once per remote; idempotent). A provider with no gateway of
		// its own says ErrUnsupported.
		err := m.reconcilePeers(dctx)
		if err == nil {
			var spec provider.TunnelSpec
			if spec, err = m.tunnelSpec(dctx, remote, preq.Site); err == nil {
				if _, err = p.EstablishTunnel(dctx, spec); errors.Is(err, provider.ErrUnsupported) {
					err = nil
				}
			}
		}
		if err != nil {
			log.Warn("deploy failed: tunnel", "err", err)
			m.setState(dctx, inst.ID, provider.StateFailed, err.Error())
			return api.Instance{}, fmt.Errorf("deploy %s: %w", inst.ID, err)
		}
		crashpoint.Hit("deploy/after-tunnel")
	}
	env := m.serviceEnv(pkg, bid, sid)
	if remote == LocalRemote {
		// The bridge listens before the service starts, which dials it
		// first thing. The path is set here too, over any manifest value,
		// so the service dials exactly where the bridge listens.
		if path := m.bridgePath(bid, sid); path != "" {
			env["BRIDGE_SOCKET_PATH"] = path
			// Not fatal: a service that never uses its bridge (and the
			// manager's route to it) works without one; one that needs it
			// fails its own start, and the event says why.
			if err := m.startBridge(dctx, inst.ID, bid, sid); err != nil {
				log.Warn("bridge not started", "err", err)
				m.store.AppendEvent(dctx, inst.ID, "bridge", "bridge not started; the service cannot register through it: "+err.Error())
			}
		}
	} else if path := remoteBridgePath(p, preq.Site, bid, sid); path != "" {
		// The tunnel transport (remotebridge.go): the endpoint is the
		// gateway's, on the remote's host.
		env["BRIDGE_SOCKET_PATH"] = path
		// A relaying provider's sidecar serves path and needs the
		// instance's token (set in env here, for the provider's secret).
		token, err := m.remoteRelayToken(p, inst.ID, env)
		if err == nil {
			err = m.startRemoteBridge(dctx, inst.ID, provider.PeerName(remote, preq.Site), sid, path, token, exposeWait)
		}
		if err != nil {
			log.Warn("bridge not started", "err", err)
			m.store.AppendEvent(dctx, inst.ID, "bridge", "bridge not started; the service cannot register through it: "+err.Error())
		}
	}
	m.setState(dctx, inst.ID, provider.StateCreating, "")
	preq.Env = env
	h, err := p.Deploy(dctx, preq)
	if err != nil {
		m.stopBridge(dctx, inst.ID, false)
		log.Warn("deploy failed", "err", err)
		m.setState(dctx, inst.ID, provider.StateFailed, err.Error())
		return api.Instance{}, fmt.Errorf("deploy %s: %w", inst.ID, err)
	}
	crashpoint.Hit("deploy/after-provider")
	out, err := m.update(dctx, inst.ID, state.Update{Handle: &h})
	if err != nil {
		return api.Instance{}, fmt.Errorf("deploy %s: record handle: %w", inst.ID, err)
	}
	m.store.AppendEvent(dctx, inst.ID, state.EventDeploy, "started on "+remote)
	m.schedule(inst.ID, healthInterval(pkg))
	if _, err := m.refresh(dctx, p, out); err != nil {
		log.Warn("status after deploy", "err", err)
	}
	if out, err = m.store.GetInstance(dctx, inst.ID); err != nil {
		return api.Instance{}, fmt.Errorf("deploy %s: %w", inst.ID, err)
	}
	m.syncRoute(dctx, out)
	log.Info("deployed", "state", out.State, "address", out.Address)
	return toAPI(out), nil
}

// pickServiceID returns want when it is free, or the smallest free id ≥ 1
// (0 is the SDK's registration mode) when want is nil. Callers hold m.mu.
func (m *Manager) pickServiceID(ctx context.Context, want *uint64) (uint64, error) {
	live, err := m.store.ListInstances(ctx, state.Filter{})
	if err != nil {
		return 0, fmt.Errorf("deploy: list instances: %w", err)
	}
	// Service ids are global (as on chain), not per blueprint: the
	// registry, the auth proxy's routes and its API keys are all keyed by
	// service id alone, so two live instances sharing one would share keys.
	used := map[uint64]string{}
	for _, in := range live {
		if in.State != provider.StateFailed {
			used[in.ServiceID] = in.ID
		}
	}
	if want != nil {
		if other, ok := used[*want]; ok {
			return 0, fmt.Errorf("deploy: service id %d is already served by %s: %w", *want, other, provider.ErrExists)
		}
		return *want, nil
	}
	for id := uint64(1); ; id++ {
		if _, ok := used[id]; !ok {
			return id, nil
		}
	}
}

// serviceEnv is the environment the Blueprint SDK gives a service (see
// BLUEPRINT-WIRE §3), then the manifest's env. DATA_DIR and
// BRIDGE_SOCKET_PATH depend on where the instance runs, so providers add them.
func (m *Manager) serviceEnv(pkg *blueprint.Package, bid, sid uint64) map[string]string {
	se := m.cfg.ServiceEnv
	env := map[string]string{
		"BLUEPRINT_ID": strconv.FormatUint(bid, 10),
		"SERVICE_ID":   strconv.FormatUint(sid, 10),
		"HTTP_RPC_URL": se.HTTPRPCURL,
		"WS_RPC_URL":   se.WSRPCURL,
		"KEYSTORE_URI": se.KeystoreURI,
		"PROTOCOL":     se.Protocol,
		"CHAIN":        se.Chain,
		"BOOTNODES":    bootnodes(se.Bootnodes),
	}
	for k, v := range pkg.Manifest.Env {
		env[k] = v
	}
	return env
}

// bootnodes formats multiaddrs as the SDK does: each preceded by a space.
func bootnodes(addrs []string) string {
	var b strings.Builder
	for _, a := range addrs {
		b.WriteString(" ")
		b.WriteString(a)
	}
	return b.String()
}

func (m *Manager) setState(ctx context.Context, id string, st provider.State, msg string) {
	if _, err := m.update(ctx, id, state.Update{State: &st, Message: &msg}); err != nil {
		m.log.Error("update state", "instance", id, "state", st, "err", err)
	}
}

// Terminate stops an instance. It records terminating first so a crash
// mid-way is finished by the next reconcile.
func (m *Manager) Terminate(ctx context.Context, id string) (api.Instance, error) {
	unlock := m.lockInstance(id)
	defer unlock()
	inst, err := m.store.GetInstance(ctx, id)
	if err != nil {
		return api.Instance{}, instanceErr(id, err)
	}
	if inst.State == provider.StateTerminated {
		return toAPI(inst), nil
	}
	p, err := m.providerFor(ctx, inst.Remote)
	if err != nil {
		return api.Instance{}, err
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	m.setState(tctx, id, provider.StateTerminating, "")
	crashpoint.Hit("terminate/after-mark")
	if inst.Remote != LocalRemote {
		// The remote's last instance may take its gateway with it: tell
		// the gateway to close the bridge endpoint while it still answers,
		// not after (that call would wait out its timeout).
		m.stopBridge(tctx, id, false)
	}
	// A remote instance without a handle (its deploy failed, or was cut
	// short before the handle was recorded) may still have left something
	// on the target — a container, the remote's gateway — which remote
	// providers find by the instance id alone. A local one without a
	// handle never started a supervisor.
	if len(inst.Handle) > 0 || inst.Remote != LocalRemote {
		err := p.Terminate(tctx, provider.Ref{InstanceID: id, Remote: inst.Remote, Handle: inst.Handle})
		if err != nil && !errors.Is(err, provider.ErrNotFound) {
			msg := "terminate failed: " + err.Error()
			m.setState(tctx, id, provider.StateTerminating, msg)
			return api.Instance{}, fmt.Errorf("terminate %s: %w", id, err)
		}
	}
	crashpoint.Hit("terminate/after-provider")
	out, err := m.finishTerminate(tctx, inst)
	if err != nil {
		return api.Instance{}, fmt.Errorf("terminate %s: record: %w", id, err)
	}
	m.log.Info("terminated", "instance", id)
	return toAPI(out), nil
}

// finishTerminate records inst terminated once nothing of it runs, and
// drops what the manager keeps for it: its health schedule, bridge, routes,
// the service's API keys, and (with its remote's or site's last instance)
// its hub peer. Terminate and the reconcile of an interrupted terminate
// both end here. The caller holds the instance's lock.
func (m *Manager) finishTerminate(ctx context.Context, inst state.Instance) (state.Instance, error) {
	st := provider.StateTerminated
	empty := ""
	out, err := m.update(ctx, inst.ID, state.Update{State: &st, Message: &empty, Address: &empty})
	if err != nil {
		return state.Instance{}, err
	}
	m.unschedule(inst.ID)
	m.dropCostRate(inst.ID)
	// The bridge's shutdown deletes the record its service registered;
	// dropRoutes then removes any the manager wrote.
	m.stopBridge(ctx, inst.ID, false)
	m.dropRoutes(ctx, inst.ID)
	m.revokeServiceKeys(ctx, inst.ServiceID)
	if inst.Remote != LocalRemote {
		// The remote's last instance takes its peer with it (unless the
		// remote was exported by hand). The instance is gone either way,
		// so a failure here is only worth a warning.
		if err := m.reconcilePeers(ctx); err != nil {
			m.log.Warn("tunnel peers after terminate", "instance", inst.ID, "err", err)
		}
	}
	return out, nil
}

// List returns instances matching opts.
func (m *Manager) List(ctx context.Context, opts api.ListOptions) ([]api.Instance, error) {
	out := []api.Instance{}
	err := m.EachInstance(ctx, opts, func(in api.Instance) error {
		out = append(out, in)
		return nil
	})
	return out, err
}

// EachInstance calls fn for each instance matching opts as it is read from
// state, so the list API can stream.
func (m *Manager) EachInstance(ctx context.Context, opts api.ListOptions, fn func(api.Instance) error) error {
	f := state.Filter{IncludeTerminated: opts.All, Remote: opts.Remote}
	for _, in := range m.cache.matching(f) {
		if opts.RemoteOnly && in.Remote == LocalRemote {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list: %w", err)
		}
		if err := fn(toAPI(in)); err != nil {
			return fmt.Errorf("list: %w", err)
		}
	}
	return nil
}

// Status returns an instance with a fresh look from its provider.
func (m *Manager) Status(ctx context.Context, id string) (api.InstanceDetail, error) {
	inst, err := m.store.GetInstance(ctx, id)
	if err != nil {
		return api.InstanceDetail{}, instanceErr(id, err)
	}
	d := api.InstanceDetail{}
	if !inst.State.Final() && len(inst.Handle) > 0 {
		if p, perr := m.providerFor(ctx, inst.Remote); perr == nil {
			d.Capabilities = provider.Capabilities(p)
			if s, serr := m.refresh(ctx, p, inst); serr == nil {
				d.Restarts = s.Restarts
			}
			if fresh, gerr := m.store.GetInstance(ctx, id); gerr == nil {
				inst = fresh
			}
		}
	}
	d.Instance = toAPI(inst)
	d.Route = m.routeOf(id)
	evs, err := m.store.Events(ctx, id, 20)
	if err != nil {
		return api.InstanceDetail{}, fmt.Errorf("status %s: events: %w", id, err)
	}
	for _, e := range evs {
		d.Events = append(d.Events, api.Event{Time: e.Time, Kind: e.Kind, Message: e.Message})
	}
	return d, nil
}

// refresh asks the provider for an instance's status and records a change.
func (m *Manager) refresh(ctx context.Context, p provider.Provider, inst state.Instance) (provider.Status, error) {
	s, err := p.Status(ctx, provider.Ref{InstanceID: inst.ID, Remote: inst.Remote, Handle: inst.Handle})
	if errors.Is(err, provider.ErrNotFound) {
		s = provider.Status{State: provider.StateFailed, Message: "instance no longer exists on its target"}
	} else if err != nil {
		return s, err
	}
	// A freshly started instance whose health check has not passed yet is
	// still creating, not degraded, for a grace period: most services take
	// a moment to listen.
	if inst.State == provider.StateCreating && s.State == provider.StateDegraded &&
		s.Restarts == 0 && time.Since(inst.CreatedAt) < m.startGrace {
		s.State = provider.StateCreating
		s.Message = "starting: " + s.Message
	}
	if s.State != inst.State || s.Message != inst.Message || (s.Address != "" && s.Address != inst.Address) {
		u := state.Update{State: &s.State, Message: &s.Message}
		if s.Address != "" {
			u.Address = &s.Address
		}
		out, err := m.update(ctx, inst.ID, u)
		if err != nil {
			return s, err
		}
		if out.Address != inst.Address {
			m.syncRoute(ctx, out)
		}
	}
	return s, nil
}

// Logs streams an instance's logs through its provider.
func (m *Manager) Logs(ctx context.Context, id string, opts provider.LogOptions, w io.Writer) error {
	inst, err := m.store.GetInstance(ctx, id)
	if err != nil {
		return instanceErr(id, err)
	}
	p, err := m.providerFor(ctx, inst.Remote)
	if err != nil {
		return err
	}
	lg, ok := p.(provider.Logser)
	if !ok {
		return fmt.Errorf("logs of %s: %w", id, provider.ErrUnsupported)
	}
	return lg.Logs(ctx, provider.Ref{InstanceID: id, Remote: inst.Remote, Handle: inst.Handle}, opts, w)
}

func instanceErr(id string, err error) error {
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("instance %s: %w", id, provider.ErrNotFound)
	}
	return fmt.Errorf("instance %s: %w", id, err)
}

func toAPI(in state.Instance) api.Instance {
	return api.Instance{
		ID:           in.ID,
		Site:         in.Site,
		Remote:       in.Remote,
		Provider:     in.ProviderType,
		Blueprint:    in.BlueprintName,
		BlueprintID:  in.BlueprintID,
		ServiceID:    in.ServiceID,
		Package:      in.PackagePath,
		State:        string(in.State),
		Message:      in.Message,
		Address:      in.Address,
		CreatedAt:    in.CreatedAt,
		UpdatedAt:    in.UpdatedAt,
		TerminatedAt: in.TerminatedAt,
	}
}

// checkRemoteConfig refuses a deploy whose --remote-config names a file other
// than the one this manager loaded: remotes (and their credentials) come
// from the manager's config, and using another file's name for a remote
// would deploy somewhere the operator did not mean.
func (m *Manager) checkRemoteConfig(path string) error {
	if path == "" {
		return nil
	}
	same := func(a, b string) bool {
		if a == "" || b == "" {
			return false
		}
		ra, errA := filepath.EvalSymlinks(a)
		rb, errB := filepath.EvalSymlinks(b)
		return errA == nil && errB == nil && ra == rb
	}
	if same(path, m.cfg.File) {
		return nil
	}
	running := m.cfg.File
	if running == "" {
		running = "built-in defaults (no config file)"
	}
	return api.Invalid("--remote-config %s is not the config this manager runs with (%s); restart the manager with `bpm manager --remote-config %s`, or deploy without --remote-config", path, running, path)
}
