// Package ssh is bpm's SSH provider: it runs instances on plain hosts reached
// over SSH, as Docker containers or native processes bound to loopback, with
// host keys verified against known_hosts.
//
// So far it holds the config schema only, so [remote.NAME] sections of type
// "ssh" load and validate; building the provider returns
// provider.ErrNotAvailableYet until the implementation lands.
package ssh
