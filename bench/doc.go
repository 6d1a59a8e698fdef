// Package bench holds the benchmarks behind bpm's performance targets (the
// foundation issue): local deploy initiation p50 under 50 ms, `list` over
// 10,000 instances under 50 ms, and a manager idle RSS under 40 MiB.
//
// Each target is a benchmark whose sub-benchmarks put a baseline and bpm side
// by side in the same run, so a slow or busy machine slows both and the
// comparison stays meaningful:
//
//	BenchmarkDeploy/baseline-exec   fork/exec of the service binary
//	BenchmarkDeploy/bpm-api         api.Client.Deploy through a real manager
//	BenchmarkList10k/baseline-sql   a raw SELECT of the rows via database/sql
//	BenchmarkList10k/store          state.ListInstances
//	BenchmarkList10k/bpm-api        api.Client.List over the unix socket
//	BenchmarkIdleRSS/baseline-go    an idle trivial Go program (bench/cmd/idle)
//	BenchmarkIdleRSS/bpm-manager    an idle `bpm manager`
//
// Figures are custom metrics (p50-ms, p99-ms, rss-MiB); scripts/bench runs
// the benchmarks and prints them in a table beside each target. Nothing here
// asserts a time: speed is measured, not tested, and `go test ./bench/`
// without -bench only runs the quick checks of the helpers.
//
// Like the local provider's tests, the test binary plays every process of a
// deployment when re-executed: the supervisor (BPM_TEST_SUPERVISOR=1) and
// the service (BPM_TEST_SERVICE, see internal/supervisor/testservice).
package bench
