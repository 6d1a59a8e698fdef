// Package manager is bpm's orchestrator: it owns the state store, builds a
// provider per remote, deploys and terminates instances (intent first, then
// side effects), reconciles what state says with what providers report after
// a restart, polls health, and serves the local API the CLI talks to.
package manager
