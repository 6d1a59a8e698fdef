package builtin

import (
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/local"
)

// The local provider is registered in every build, with or without remote
// support: it is the default and must behave identically in both.
//
// The registry's local.Info().New builds the provider from provider.Env with
// default options and no executable resolver, so its Deploy reports that no
// resolver is configured. The manager, which owns the blueprint fetch/build
// logic, builds its deploying local provider with
// local.NewFromEnv(env, local.Options{Executable: ...}) instead.
func init() {
	provider.Register(local.Info())
}
