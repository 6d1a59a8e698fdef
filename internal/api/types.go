package api

import "time"

// Version is the API version prefix; bump it on an incompatible change.
const Version = "v1"

// DeployRequest asks the manager to deploy a package.
type DeployRequest struct {
	// PackagePath is the absolute path of the package directory or its
	// blueprint.toml; the CLI resolves names to paths before calling.
	PackagePath string `json:"package_path"`
	// Remote is the remote's name; empty or "local" means this machine.
	Remote string `json:"remote,omitempty"`
	// ServiceID is the service id to run; nil lets the manager pick the
	// smallest id not used by a live instance of the same blueprint.
	ServiceID *uint64 `json:"service_id,omitempty"`
	// BlueprintID overrides the manifest's blueprint_id.
	BlueprintID *uint64 `json:"blueprint_id,omitempty"`
	// Region picks one of the remote's regions ([remote.NAME.regions]);
	// empty means its primary. Only remotes with regions accept one.
	Region string `json:"region,omitempty"`
	// RemoteConfig is the absolute path of the config file the operator
	// named with --remote-config. The manager resolves remotes from the
	// config it was started with, so a different file is refused rather
	// than silently ignored.
	RemoteConfig string `json:"remote_config,omitempty"`
	// Force deploys even when the forecast breaks a monthly budget.
	Force bool `json:"force,omitempty"`
}

// Instance is an instance as the API reports it. It never carries secrets.
type Instance struct {
	ID     string `json:"id" yaml:"id"`
	Remote string `json:"remote" yaml:"remote"`
	// Site is which of the remote's gateways the instance sits behind
	// (an SSH host); empty for the remote's only one.
	Site         string     `json:"site,omitempty" yaml:"site,omitempty"`
	Provider     string     `json:"provider" yaml:"provider"`
	Blueprint    string     `json:"blueprint" yaml:"blueprint"`
	BlueprintID  uint64     `json:"blueprint_id" yaml:"blueprint_id"`
	ServiceID    uint64     `json:"service_id" yaml:"service_id"`
	Package      string     `json:"package" yaml:"package"`
	State        string     `json:"state" yaml:"state"`
	Message      string     `json:"message,omitempty" yaml:"message,omitempty"`
	Address      string     `json:"address,omitempty" yaml:"address,omitempty"`
	CreatedAt    time.Time  `json:"created_at" yaml:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at" yaml:"updated_at"`
	TerminatedAt *time.Time `json:"terminated_at,omitempty" yaml:"terminated_at,omitempty"`
}

// Event is one entry of an instance's event log.
type Event struct {
	Time    time.Time `json:"time" yaml:"time"`
	Kind    string    `json:"kind" yaml:"kind"`
	Message string    `json:"message" yaml:"message"`
}

// InstanceDetail is what `status` shows: the instance, the provider's live
// view of it, and its recent events.
type InstanceDetail struct {
	Instance     `yaml:",inline"`
	Restarts     int      `json:"restarts" yaml:"restarts"`
	Capabilities []string `json:"capabilities,omitempty" yaml:"capabilities,omitempty"`
	// Route is the service registry's entry for the instance: how the auth
	// proxy reaches it. Nil when the instance has none (no port, not yet
	// running, terminated, or its service id is routed to another instance).
	Route  *Route  `json:"route,omitempty" yaml:"route,omitempty"`
	Events []Event `json:"events" yaml:"events"`
}

// Route is one service registry entry as status shows it.
type Route struct {
	// Service is the registry key, "service_id:sub_id".
	Service string `json:"service" yaml:"service"`
	// Transport is tcp-local, unix or tunnel.
	Transport string `json:"transport" yaml:"transport"`
	// Gateway is the remote whose tunnel reaches the upstream (tunnel only).
	Gateway string `json:"gateway,omitempty" yaml:"gateway,omitempty"`
	// Upstream is the URL the proxy forwards to, as seen from the gateway
	// for the tunnel transport.
	Upstream string `json:"upstream" yaml:"upstream"`
}

// ListResponse is the reply to a list call.
type ListResponse struct {
	Instances []Instance `json:"instances"`
}

// ManagerInfo describes the running manager.
type ManagerInfo struct {
	Version       string    `json:"version" yaml:"version"`
	RemoteSupport bool      `json:"remote_support" yaml:"remote_support"`
	Providers     []string  `json:"providers" yaml:"providers"`
	Remotes       []string  `json:"remotes" yaml:"remotes"`
	StatePath     string    `json:"state_path" yaml:"state_path"`
	PID           int       `json:"pid" yaml:"pid"`
	StartedAt     time.Time `json:"started_at" yaml:"started_at"`
	// ProxyURL is where the auth proxy answers (http://host:port/); empty
	// when the manager does not serve it.
	ProxyURL string `json:"proxy_url,omitempty" yaml:"proxy_url,omitempty"`
}
