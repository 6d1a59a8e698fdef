package cost

import "github.com/bpm-project/bpm/internal/config"

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
