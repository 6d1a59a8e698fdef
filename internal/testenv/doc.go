// Package testenv connects tests to the real components scripts/testenv
// starts (Docker engines, SSH hosts, the UDP relay, a Kubernetes cluster).
//
// A test asks for what it needs:
//
//	env := testenv.Require(t, "docker")
//	cli := dial(env.Docker.Host)
//
// Require reads the BPM_TEST_* variables that `scripts/testenv env` prints
// (scripts/test exports them before running `go test`). When they are not
// set it runs `scripts/testenv env` itself, so `go test ./...` in a shell
// without the exports still finds a running environment. A component that is
// not up skips the test with the command that starts it; under CI=true it
// fails the test instead, so CI never passes by skipping.
//
// The smoke tests in this package (TestIntegration*) check each component
// end to end; subpackage udprelay is the impairment relay itself.
package testenv
