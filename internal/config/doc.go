// Package config loads bpm's operator configuration, config.toml.
//
// The file has three kinds of sections: [manager] (where bpm keeps its data,
// socket and logs), [service_env] (the chain settings the Blueprint SDK hands
// to every service) and any number of [remote.NAME] sections, each naming a
// provider type and carrying that provider's own keys.
//
// Loading is strict because a typo in a config file should fail loudly at
// load time, not silently deploy to the wrong place:
//
//   - Each provider type registers a typed struct (provider.Info.NewConfig);
//     a remote's section is decoded into it, and any key the struct does not
//     declare, spelled exactly, is an error with its line and column
//     (package tomlstrict does the checking).
//   - ${VAR} and ${VAR:-default} are expanded in every string; a missing
//     variable without a default is an error naming the key. $$ is a dollar.
//   - ~ and ~/ are expanded in fields tagged path:"true"; relative paths are
//     resolved against the config file's directory.
//   - A field tagged secret:"true" may hold keystore:NAME, resolved through
//     the keystore at load; in any other field, path fields included, it is
//     an error. Secret fields have the type Secret, which never prints its
//     value, and Redacted replaces them for `bpm config show`.
//   - Validation, including each provider struct's Validate method, reports
//     every problem at once, each with its key and line.
//
// config imports provider (to find the registered types); provider packages
// may import config for the shared sub-tables (Tunnel, Resources) and the
// Secret and FieldErrors types.
package config
