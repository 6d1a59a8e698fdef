package cost

import (
	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/config"
)

// pricer is what every remote provider's config struct offers through the
// shared config.Pricing field. Read through an interface rather than by
// importing the providers, which the noremote build leaves out.
type pricer interface{ PricingConfig() config.Pricing }

// PricingOf returns a remote's [pricing] sub-table; ok is false for a
// remote whose provider config has none (or a nil remote).
func PricingOf(r *config.Remote) (config.Pricing, bool) {
	if r == nil {
		return config.Pricing{}, false
	}
	p, ok := r.Settings.(pricer)
	if !ok {
		return config.Pricing{}, false
	}
	return p.PricingConfig(), true
}

// ForRemote builds the estimate request for a package on a named remote of
// cfg: "" and "local" are this machine. ok is false when cfg has no such
// remote. The caller fills Now, MaxAge and ClusterInstances.
func ForRemote(cfg *config.Config, remote string, res blueprint.Resources) (Request, bool, error) {
	n, err := NeedOf(res)
	if err != nil {
		return Request{}, true, err
	}
	req := Request{Remote: remote, ProviderType: "local", Need: n, MaxAge: cfg.Cost.MaxPriceAgeDuration()}
	if remote == "" || remote == config.LocalRemote {
		req.Remote = config.LocalRemote
		req.Pricing = cfg.Cost.Local
		return req, true, nil
	}
	r, ok := cfg.Remotes[remote]
	if !ok {
		return req, false, nil
	}
	req.ProviderType = r.Type
	req.Pricing, _ = PricingOf(r)
	return req, true, nil
}
