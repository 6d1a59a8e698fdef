package blueprint

import (
	"fmt"
	"time"
)

// Manifest is the decoded blueprint.toml. Field names follow the TOML keys.
type Manifest struct {
	Name        string    `toml:"name"`
	Version     string    `toml:"version"`
	BlueprintID *uint64   `toml:"blueprint_id"`
	Sources     []Source  `toml:"sources"`
	Resources   Resources `toml:"resources"`
	// Isolation is the boundary the instance must run inside: "" or
	// "none" for what the provider gives anyway (a process or a
	// container), "vm" for a virtual machine per instance.
	//
	// Top level, not in [resources]: resources are amounts a scheduler
	// reserves and a quota counts, which a provider may meet with any
	// runtime; isolation names the runtime itself, and a provider that
	// cannot give it must refuse rather than run the instance with less.
	// That is how the Blueprint SDK models it too: VM isolation is a
	// property of where the manager runs a service (its VM runtime for
	// native binaries, its Kubernetes runtime with Kata Containers for
	// containers), beside the source and next to the metadata's other
	// placement policies (confidentiality_policy, gpu_requirements), not a
	// quantity. A string rather than a bool leaves room for the SDK's
	// "tee_required" without another key.
	Isolation string            `toml:"isolation"`
	Ports     []Port            `toml:"ports"`
	Env       map[string]string `toml:"env"`
	Health    *Health           `toml:"health"`
}

// SourceKind names how runnable bits are obtained.
type SourceKind string

// Source kinds. Wasm is reserved by the Blueprint SDK and rejected here.
const (
	SourceContainer SourceKind = "container"
	SourceNative    SourceKind = "native"
	SourceTesting   SourceKind = "testing"
)

// Source is one way to get the blueprint's runnable bits; a manifest lists
// them in preference order, like the SDK's launch order.
type Source struct {
	Kind SourceKind `toml:"kind"`
	// container
	Image string `toml:"image"`
	// Archive is an image archive (`docker save` or OCI layout, as `bpm
	// package image` writes) holding Image, relative to the manifest's
	// directory: engines without registry access load it from there. An
	// operator's [remote.NAME] image_archives entry for the same image wins.
	Archive string `toml:"archive"`
	// native
	Binaries []Binary `toml:"binaries"`
	// Args are passed to the process (or the container) on start; they are
	// allowed for every kind.
	Args []string `toml:"args"`
	// testing: a Go source directory built with `go build`, relative to the
	// manifest's directory.
	Dir string `toml:"dir"`
}

// Binary is one per-platform native binary.
type Binary struct {
	OS     string `toml:"os"`   // GOOS spelling: linux, darwin, windows, freebsd
	Arch   string `toml:"arch"` // GOARCH spelling: amd64, arm64, ...
	Path   string `toml:"path"` // relative to the manifest's directory, or absolute
	URL    string `toml:"url"`
	SHA256 string `toml:"sha256"` // lowercase hex, 64 chars
}

// Resources is what one instance asks for.
type Resources struct {
	CPU     string `toml:"cpu"`     // cores, e.g. "0.5", "2", "500m"
	Memory  string `toml:"memory"`  // bytes with unit, e.g. "512Mi", "1Gi"
	Storage string `toml:"storage"` // bytes with unit
	GPU     int    `toml:"gpu"`
}

// Isolation values.
const (
	IsolationNone = "none"
	// IsolationVM asks for a virtual machine boundary around the instance:
	// on Kubernetes a RuntimeClass such as Kata Containers'.
	IsolationVM = "vm"
)

// WantsVM reports whether the manifest asks for VM isolation, which
// providers that cannot give it refuse.
func (m *Manifest) WantsVM() bool { return m.Isolation == IsolationVM }

// Port is one port the instance listens on.
type Port struct {
	Name     string `toml:"name"`
	Port     int    `toml:"port"`
	Protocol string `toml:"protocol"` // tcp (default) or udp
}

// Health is the instance's health check: exactly one of HTTP or TCP.
type Health struct {
	HTTP     string   `toml:"http"` // path, e.g. "/healthz", on the first tcp port
	TCP      bool     `toml:"tcp"`  // connect to the first tcp port
	Port     string   `toml:"port"` // port name; default the first tcp port
	Interval Duration `toml:"interval"`
	Timeout  Duration `toml:"timeout"`
}

// Duration is a time.Duration written in TOML as a Go duration string ("5s").
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		// time's message names the package ("time: invalid duration"); the
		// operator needs to know what to write instead.
		return fmt.Errorf("invalid duration %q, want a Go duration like \"10s\"", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Package is a loaded, validated blueprint: its manifest and the directory it
// came from (paths in the manifest are relative to Dir).
type Package struct {
	Manifest Manifest
	Dir      string // absolute
	File     string // absolute path of blueprint.toml
}
