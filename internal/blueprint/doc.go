// Package blueprint loads, validates and fetches blueprint packages.
//
// A package is a directory holding a blueprint.toml manifest: the service's
// name and version, one or more sources of runnable bits in preference
// order, the resources one instance asks for, its ports, its environment and
// its health check. This package is the only place that reads manifests, so
// every consumer (CLI, manager, providers, cost estimator) sees the same
// rules:
//
//   - Parse decodes strictly: an unknown key or a value of the wrong type is
//     a *ParseError with file:line:col. It then fills in defaults and calls
//     Validate, which reports every broken rule at once as a
//     *ValidationError naming each field (sources[1].binaries[0].sha256).
//   - Load reads a package from a directory or manifest path; Resolve turns
//     the CLI's --package argument (a path or a package name) into one.
//   - Fetcher (and Package.Executable for the local provider) turns a native
//     or testing source into a verified executable in a content-addressed
//     cache: the file is named by its sha256 and is re-hashed before every
//     use, so nothing unverified is ever returned for execution.
//
// # Relation to the Blueprint SDK's source model
//
// The SDK's manager (crates/manager/src/sources) knows four sources; a
// manifest expresses each of them, minus what is on-chain only:
//
//   - Container{registry, image, tag} is a container source whose image is
//     the reference "registry/image:tag" (for example
//     "ghcr.io/tangle/echo:0.1.0"). As in the SDK, no whitespace and no
//     "scheme://" are allowed.
//   - Github{owner, repo, tag, binaries} and Remote{dist_url, archive_url,
//     binaries} are both a native source: each BlueprintBinary becomes a
//     Binary with the release asset's download url, its sha256 and the os
//     and arch in Go's GOOS/GOARCH spelling (SDK os linux/windows/macos/bsd
//     are linux/windows/darwin/freebsd; arch amd64/arm64/riscv64 keep their
//     names, arm32 is arm). A native Binary may instead name a local path,
//     which the SDK has no equivalent for.
//   - Testing{cargo_package, cargo_bin, base_path} is a testing source whose
//     dir is built in place; bpm builds Go with `go build`, not cargo.
//   - Wasm (on-chain source kind 1) is reserved by the SDK and rejected here.
//
// The SDK's launch order puts native first; a manifest states its own order
// and the local provider runs the first source it can run as a process
// (see Package.NativeSource). Containers are left to providers that can run
// them, which is why ErrNoNativeSource exists.
package blueprint
