// Package version holds bpm's build identity, set at link time with
// -ldflags "-X github.com/bpm-project/bpm/internal/version.Version=...".
package version

import "runtime/debug"

// Version is bpm's release version; "dev" for an untagged build.
var Version = "dev"

// Commit returns the VCS revision the binary was built from, when known.
func Commit() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			return s.Value
		}
	}
	return ""
}
