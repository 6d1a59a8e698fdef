// Package docker is bpm's Docker provider: it runs instances as containers on
// a Docker Engine (local socket, TCP with TLS, SSH) or a Docker-compatible
// API such as a hosted machines service, publishing no ports.
//
// So far it holds the config schema only, so [remote.NAME] sections of type
// "docker" load and validate; building the provider returns
// provider.ErrNotAvailableYet until the implementation lands.
package docker
