// Package e2e holds end-to-end tests that build the real bpm binary and
// drive it the way an operator does: a manager in the background, CLI
// commands against it, real processes, real signals.
package e2e
