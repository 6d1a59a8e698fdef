// Package bridgeservice is the testservice http mode plus what a Blueprint
// service does at start: Ping its manager's bridge at BRIDGE_SOCKET_PATH and
// register its proxy route with an owner. It is separate from testservice
// so the tests that do not need it do not link gRPC.
package bridgeservice

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bpm-project/bpm/internal/bridge"
	"github.com/bpm-project/bpm/internal/bridge/bridgepb"
	"github.com/bpm-project/bpm/internal/supervisor/testservice"
)

// Mode is the testservice.EnvMode value that selects this service.
const Mode = "http-bridge"

// Env variables of the registration.
const (
	EnvKeyPrefix = "BPM_TEST_API_KEY_PREFIX" // api_key_prefix to register
	EnvOwner     = "BPM_TEST_OWNER"          // hex of a 33-byte secp256k1 owner key
)

// Registered is printed once the registration succeeded.
const Registered = "bpm-test-service: registered through the bridge"

// Main runs the service when testservice.EnvMode is Mode and reports false
// otherwise. Call it from TestMain before testservice.Main.
func Main() bool {
	if os.Getenv(testservice.EnvMode) != Mode {
		return false
	}
	testservice.ServeHTTP(func(addr net.Addr) {
		go func() {
			if err := register(addr); err != nil {
				fmt.Fprintln(os.Stderr, "bpm-test-service: bridge:", err)
				return
			}
			fmt.Println(Registered)
		}()
	})
	os.Exit(0)
	return true
}

func register(addr net.Addr) error {
	path := os.Getenv("BRIDGE_SOCKET_PATH")
	sid, err := strconv.ParseUint(os.Getenv("SERVICE_ID"), 10, 64)
	if err != nil {
		return fmt.Errorf("SERVICE_ID: %w", err)
	}
	owner, err := hex.DecodeString(os.Getenv(EnvOwner))
	if err != nil {
		return fmt.Errorf("%s: %w", EnvOwner, err)
	}
	c, err := bridge.DialUnix(path)
	if err != nil {
		return err
	}
	// Kept open for the process's life, as the SDK's runner does.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The bridge listens before the service starts; retry only what a slow
	// first connection needs.
	for {
		if _, err = c.Ping(ctx, &emptypb.Empty{}); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ping: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	_, err = c.RegisterBlueprintServiceProxy(ctx, &bridgepb.RegisterBlueprintServiceProxyRequest{
		ServiceId:    sid,
		ApiKeyPrefix: os.Getenv(EnvKeyPrefix),
		UpstreamUrl:  "http://" + addr.String(),
		Owners:       []*bridgepb.ServiceOwner{{KeyType: bridgepb.ServiceOwner_ECDSA, KeyBytes: owner}},
	})
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	return nil
}
