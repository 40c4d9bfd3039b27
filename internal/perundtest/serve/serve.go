// Package serve is the test kit's API server: perund's JSON-RPC API on a
// free loopback port for the length of a test (apart from perundtest, which
// the rpc package's own tests import).
package serve

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/config"
	"github.com/perund/perund/node"
	"github.com/perund/perund/rpc"
)

// API serves n's API with cfg on a free loopback port until the test
// ends (the server shuts down before the node closes); hook, if set,
// changes the server before it serves. It returns the /rpc URL (wss://
// when cfg has TLS) and the server.
func API(t testing.TB, n *node.Node, cfg config.RPC, hook func(*rpc.Server)) (string, *rpc.Server) {
	t.Helper()
	srv := rpc.NewServer(n, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if hook != nil {
		hook(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		select {
		case err := <-served:
			require.NoError(t, err)
		case <-ctx.Done():
			t.Error("the API server did not stop")
		}
	})
	scheme := "ws://"
	if cfg.TLS.Enabled() {
		scheme = "wss://"
	}
	return scheme + ln.Addr().String() + "/rpc", srv
}
