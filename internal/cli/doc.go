// Package cli implements bpm's command line: one small unit per command
// (flags struct, constructor, run function), streams injected through
// IOStreams so every command is testable without a terminal, results on
// stdout, progress and notices on stderr, and one table of exit codes.
//
// Commands other than `manager`, `up`, `package`, `config`, `keys` and
// `version` are clients of the manager's local API (package api).
package cli
