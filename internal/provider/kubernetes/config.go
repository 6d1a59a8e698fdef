package kubernetes

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/provider"
)

// Type is the provider's registry name.
const Type = "kubernetes"

// Config is a [remote.NAME] section of type "kubernetes".
type Config struct {
	Type string `toml:"type"`
	// Kubeconfig is the kubeconfig file. Empty means the usual lookup
	// ($KUBECONFIG, then ~/.kube/config, then in-cluster), as kubectl does.
	// Credentials come from the kubeconfig, including exec plugins, so
	// they never need to be in bpm's config.
	Kubeconfig string `toml:"kubeconfig" path:"true"`
	// Context selects a kubeconfig context; empty means its current one.
	Context string `toml:"context"`
	// Namespace holds everything bpm creates on the cluster. Default "bpm".
	Namespace string `toml:"namespace"`
	// GatewayImage overrides the gateway's container image; empty means
	// the image matching this bpm release.
	GatewayImage string `toml:"gateway_image"`
	// GatewayPullPolicy is the gateway container's imagePullPolicy:
	// Always, IfNotPresent (default) or Never, the last for clusters that
	// only run images imported into their nodes (`bpm gateway image`).
	GatewayPullPolicy string `toml:"gateway_pull_policy"`
	// ImagePullSecrets names Secrets in Namespace used to pull images from
	// private registries.
	ImagePullSecrets []string `toml:"image_pull_secrets"`
	// NodeSelector restricts instances to nodes with these labels, for
	// example GPU nodes.
	NodeSelector map[string]string `toml:"node_selector"`
	// RuntimeClass is the RuntimeClass given to the pods of a package
	// whose manifest asks for isolation = "vm"; empty means
	// DefaultRuntimeClass.
	RuntimeClass string `toml:"runtime_class"`

	Resources config.Resources `toml:"resources"`
	Tunnel    config.Tunnel    `toml:"tunnel"`
	// Pricing is how bpm prices instances here (see docs/COST.md).
	Pricing config.Pricing `toml:"pricing"`
}

// DefaultNamespace is used when namespace is not set.
const DefaultNamespace = "bpm"

// DefaultRuntimeClass is used when runtime_class is not set: the name Kata
// Containers installs its RuntimeClass under, and the one the Blueprint
// SDK's container runtime asks for.
const DefaultRuntimeClass = "kata"

// NewConfig returns a config holding the defaults, which the file's values
// override.
func NewConfig() *Config {
	return &Config{Type: Type, Namespace: DefaultNamespace}
}

// Info registers the provider type.
func Info() provider.Info {
	return provider.Info{
		Type:        Type,
		Remote:      true,
		Description: "pods on a Kubernetes cluster (kubeconfig and context)",
		NewConfig:   func() any { return NewConfig() },
		New: func(ctx context.Context, env provider.Env) (provider.Provider, error) {
			cfg, ok := env.Config.(*Config)
			if !ok || cfg == nil {
				return nil, fmt.Errorf("kubernetes: remote %s: config is %T, want *kubernetes.Config", env.Remote, env.Config)
			}
			return New(ctx, env.Remote, cfg, env.Logger)
		},
	}
}

// dns1123Label is what Kubernetes accepts as a namespace or Secret name.
var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// labelKey and labelValue follow Kubernetes' label syntax (the optional
// DNS-subdomain prefix of a key is checked loosely).
var (
	labelName  = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	labelValue = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
)

// Validate reports every problem with the section.
func (c *Config) Validate() error {
	var fe config.FieldErrors
	if c.Namespace == "" || len(c.Namespace) > 63 || !dns1123Label.MatchString(c.Namespace) {
		fe.Add("namespace", "%q is not a valid namespace name (lowercase letters, digits and -, at most 63)", c.Namespace)
	}
	if c.GatewayImage != "" {
		if err := CheckImageRef(c.GatewayImage); err != nil {
			fe.Add("gateway_image", "%q: %s", c.GatewayImage, err)
		}
	}
	switch c.GatewayPullPolicy {
	case "", "Always", "IfNotPresent", "Never":
	default:
		fe.Add("gateway_pull_policy", "%q is not one of Always, IfNotPresent, Never", c.GatewayPullPolicy)
	}
	for i, s := range c.ImagePullSecrets {
		if len(s) > 253 || !dns1123Label.MatchString(s) && !validSubdomain(s) {
			fe.Add(fmt.Sprintf("image_pull_secrets[%d]", i), "%q is not a valid Secret name", s)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.NodeSelector)) {
		v := c.NodeSelector[k]
		if !validLabelKey(k) {
			fe.Add("node_selector", "%q is not a valid label key", k)
		}
		if len(v) > 63 || !labelValue.MatchString(v) {
			fe.Add("node_selector", "%q is not a valid label value (for key %q)", v, k)
		}
	}
	if c.RuntimeClass != "" && !validSubdomain(c.RuntimeClass) {
		fe.Add("runtime_class", "%q is not a valid RuntimeClass name (lowercase letters, digits, - and ., at most 253)", c.RuntimeClass)
	}
	// Kubernetes itself requires the quantity syntax config.Resources
	// checks, so a typo fails here instead of at the first deploy.
	fe.Nest("resources", c.Resources.Validate())
	fe.Nest("tunnel", c.Tunnel.Validate())
	fe.Nest("pricing", c.Pricing.Validate())
	return fe.Err()
}

func validSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, p := range strings.Split(s, ".") {
		if !dns1123Label.MatchString(p) {
			return false
		}
	}
	return true
}

func validLabelKey(k string) bool {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	}
	if hasPrefix && !validSubdomain(prefix) {
		return false
	}
	return len(name) <= 63 && labelName.MatchString(name)
}

// CheckImageRef does the checks an image reference must pass before a
// registry sees it: no scheme, no whitespace, not empty.
func CheckImageRef(ref string) error {
	switch {
	case strings.Contains(ref, "://"):
		return fmt.Errorf("an image reference has no scheme (write registry/name:tag)")
	case strings.ContainsAny(ref, " \t\r\n"):
		return fmt.Errorf("an image reference has no whitespace")
	case strings.HasSuffix(ref, ":") || strings.HasSuffix(ref, "@") || strings.HasPrefix(ref, "/"):
		return fmt.Errorf("incomplete image reference")
	}
	return nil
}

// PricingConfig exposes the [pricing] sub-table to the cost package
// without it importing this provider.
func (c *Config) PricingConfig() config.Pricing { return c.Pricing }
