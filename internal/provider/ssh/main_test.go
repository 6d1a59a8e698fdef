package ssh

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/supervisor"
	"github.com/bpm-project/bpm/internal/supervisor/testservice"
)

// The test binary doubles as every program uploaded to the hosts: run as
// `X supervise --dir DIR` it is bpm's supervisor (the same supervisor.Main
// that `bpm supervise` calls), as `X gateway` it is the gateway (the same
// ConfigFromEnv and Run that `bpm gateway` calls), and run with
// BPM_TEST_SERVICE set it is testservice's HTTP server. Building cmd/bpm
// instead would tie these tests to every other package of the module
// compiling.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "supervise" {
		os.Exit(supervisor.Main(os.Args[2:], os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "gateway" {
		os.Exit(runGateway())
	}
	if testservice.Main() {
		return
	}
	os.Exit(m.Run())
}

// runGateway is `bpm gateway` without the CLI around it: configuration
// from BPM_GATEWAY_*, stop on SIGTERM (the supervisor's stop) or SIGINT.
func runGateway() int {
	cfg, err := gateway.ConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway: configuration from the environment:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := gateway.Run(ctx, cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
