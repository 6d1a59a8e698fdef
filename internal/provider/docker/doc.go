// Package docker is bpm's Docker provider: it runs instances as containers on
// a Docker Engine reached over its unix socket or over TCP with mutual TLS,
// publishing no ports. Instances of one remote share a private bridge
// network (bpm-<remote>) with that remote's gateway container, through which
// the hub reaches them; the network and the gateway go with the remote's last
// instance.
//
// State lives on the engine: every container carries ownership labels
// (bpm.instance, bpm.remote, bpm.blueprint, bpm.service, bpm.role) and the
// instance's port and health check (bpm.port, bpm.health), so ListOwned
// returns handles that work as is and reconcile needs no side file.
// Container names are the instance ids, so a retried deploy finds what an
// interrupted one made.
//
// Why a hand-written Engine API client rather than github.com/docker/docker:
// bpm needs about fifteen endpoints (ping, containers
// create/start/inspect/stop/remove/list/logs, images inspect/load/pull,
// networks create/inspect/remove, info), all plain JSON over HTTP plus the
// 8-byte-header log multiplexing. The official module pulls in dozens of
// packages (OpenTelemetry, containerd, moby/term, ...) and takes minutes to
// compile on small CI machines, for types we would mostly not use. The client
// here negotiates the API version like the docker CLI (the lower of the
// daemon's and 1.47, refusing below 1.40) and is tested against real engines
// by the integration tests.
//
// Transport: unix:// is trusted as the socket's file permissions say;
// tcp:// and https:// use TLS verified against the configured CA (there is no
// way to skip verification), with the client certificate when set. Plain
// tcp:// is refused unless the remote says insecure = true, and then every
// call warns. When the remote names no endpoint and no TLS files,
// DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH are read as the docker
// CLI reads them, then the current docker context (dockercontext.go; one
// that skips TLS verification is refused). ssh:// endpoints are not
// available: the ssh provider's docker runtime reaches engines over SSH.
//
// Secrets: an instance's environment is passed as the container's env, as
// with any Docker deployment; bpm never logs or prints it, but anyone with
// access to the engine can read it (docker inspect). The same holds for the
// gateway's WireGuard private key. Engine access is root-equivalent on the
// engine's host anyway; give it only to the people who run it.
//
// Images: a container source's image is used when the engine has it, else
// loaded from the archive image_archives names for it, else pulled
// (anonymously) with progress on stderr.
package docker
