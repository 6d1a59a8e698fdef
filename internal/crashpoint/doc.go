// Package crashpoint kills the process at a named step, so tests can prove
// that a SIGKILL at that exact step leaves nothing unaccounted for after the
// next start (intent-first state plus reconcile). It is etcd's gofail idea
// without the code generation: a call site is one line,
//
//	crashpoint.Hit("deploy/after-intent")
//
// and costs nothing in a release build. Without the bpm_crashpoints build
// tag Hit is an empty function the compiler inlines away, so production
// binaries carry neither the check nor the environment variable. A binary
// built with -tags bpm_crashpoints reads BPM_CRASHPOINT once; when a Hit's
// name equals it, the process sends itself SIGKILL: uncatchable, no deferred
// function, no flush, no graceful shutdown — what a power cut or the OOM
// killer does, at a step chosen by the test instead of by luck.
//
// Names are "<component>/<step>" (deploy/after-intent, docker/after-create);
// the list of names lives at the call sites and in docs/ARCHITECTURE.md.
package crashpoint
