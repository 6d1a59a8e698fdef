// Package builtin registers every provider compiled into bpm, in one place,
// so the set of providers is visible at a glance and a program gets them all
// by importing this package for its side effect.
//
// The local provider is always registered. The remote providers (kubernetes,
// docker, ssh) are registered by remote.go, which building with
// `-tags bpm_noremote` leaves out; `bpm version` reports which build it is
// through provider.HasRemote.
package builtin
