package provider

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/bpm-project/bpm/internal/health"
)

// Env is what the manager hands a provider when it builds one.
type Env struct {
	// Remote is the remote's name ("local" for the default).
	Remote string
	// Config is the decoded value returned by Info.NewConfig, after
	// expansion and validation; nil for providers without config.
	Config any
	// DataDir is a directory the provider may use for its own files.
	DataDir string
	// RuntimeDir holds sockets (bridge) for local instances.
	RuntimeDir string
	Logger     *slog.Logger
	// RemoteCheck runs a health check from inside the remote, through the
	// gateway of site ("" for the remote's only one; the manager sets it for
	// remotes). Instance addresses are on the remote's private network,
	// which bpm's own process cannot route to; a provider that probes
	// instances itself uses this instead.
	RemoteCheck func(ctx context.Context, site string, spec health.Spec) error
}

// Info registers one provider type.
type Info struct {
	Type string
	// Remote is true for providers that reach other machines; they are left
	// out of builds with the bpm_noremote tag.
	Remote bool
	// Description is one line for `bpm remote types` and docs.
	Description string
	// NewConfig returns a pointer to a fresh config struct into which the
	// remote's section is strictly decoded. Fields tagged `secret:"true"`
	// are redacted in output; `path:"true"` fields get ~ expanded.
	NewConfig func() any
	// New builds the provider. It may return ErrNotAvailableYet for types
	// whose implementation has not landed.
	New func(ctx context.Context, env Env) (Provider, error)
}

var (
	mu       sync.RWMutex
	registry = map[string]Info{}
)

// Register adds a provider type. It panics on a duplicate, which is a
// programming error caught by any test that imports the builtin set.
func Register(info Info) {
	mu.Lock()
	defer mu.Unlock()
	if info.Type == "" {
		panic("provider: Register with empty type")
	}
	if _, dup := registry[info.Type]; dup {
		panic("provider: duplicate registration of " + info.Type)
	}
	registry[info.Type] = info
}

// Lookup returns the registration for a type name.
func Lookup(typ string) (Info, bool) {
	mu.RLock()
	defer mu.RUnlock()
	info, ok := registry[typ]
	return info, ok
}

// Types returns the registered type names, sorted.
func Types() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(registry))
	for t := range registry {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// HasRemote reports whether any remote provider is compiled in.
func HasRemote() bool {
	mu.RLock()
	defer mu.RUnlock()
	for _, info := range registry {
		if info.Remote {
			return true
		}
	}
	return false
}

// New builds a provider of the given type.
func New(ctx context.Context, typ string, env Env) (Provider, error) {
	info, ok := Lookup(typ)
	if !ok {
		return nil, fmt.Errorf("provider type %q: %w (known: %v)", typ, ErrNotFound, Types())
	}
	return info.New(ctx, env)
}

// Capabilities lists the optional interfaces p implements, for display.
func Capabilities(p Provider) []string {
	var caps []string
	if _, ok := p.(Logser); ok {
		caps = append(caps, "logs")
	}
	if _, ok := p.(Lister); ok {
		caps = append(caps, "list-owned")
	}
	return caps
}
