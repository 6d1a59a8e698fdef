package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/bpm-project/bpm/internal/testenv/udprelay"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bpm-udprelay:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:51830", "UDP address clients send to")
	upstream := flag.String("upstream", "", "UDP host:port of the server (can be set later over the control API)")
	control := flag.String("control", "127.0.0.1:0", "TCP address of the HTTP control API (keep it on loopback)")
	addrFile := flag.String("control-addr-file", "", "write the control API's actual host:port here once listening")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	r, err := udprelay.Listen(udprelay.Options{Listen: *listen, Upstream: *upstream, Logger: log})
	if err != nil {
		return err
	}
	defer r.Close()

	ln, err := net.Listen("tcp", *control)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if *addrFile != "" {
		// Written atomically: scripts/testenv polls for it to know we are up.
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Clean(*addrFile)); err != nil {
			return err
		}
	}
	log.Info("relay up", "listen", r.Addr(), "upstream", *upstream, "control", ln.Addr())

	srv := &http.Server{Handler: r.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("relay stopped")
	return nil
}
