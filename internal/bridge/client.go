package bridge

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bpm-project/bpm/internal/bridge/bridgepb"
)

// Client is a bridge client, for Go services (examples/echo) and tests. It
// dials as the Rust runner does: h2c over the unix socket with the
// placeholder authority [::]:50051, which the server ignores.
type Client struct {
	bridgepb.BlueprintManagerBridgeClient
	conn *grpc.ClientConn
}

// DialUnix returns a Client for the bridge at socketPath (BRIDGE_SOCKET_PATH).
// The connection is made lazily, on the first call.
func DialUnix(socketPath string) (*Client, error) {
	return DialFunc(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socketPath)
	})
}

// DialFunc returns a Client whose connections come from dial (a vsock or a
// tunnel dialer).
func DialFunc(dial func(ctx context.Context) (net.Conn, error)) (*Client, error) {
	conn, err := grpc.NewClient("passthrough:///[::]:50051",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return dial(ctx) }),
	)
	if err != nil {
		return nil, fmt.Errorf("bridge: dial: %w", err)
	}
	return &Client{BlueprintManagerBridgeClient: bridgepb.NewBlueprintManagerBridgeClient(conn), conn: conn}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
