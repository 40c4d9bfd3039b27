// Package serve is the test kit's API server: perund's JSON-RPC API on a
// free loopback port for the length of a test (apart from perundtest, which
// the rpc package's own tests import).
package serve

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/config"
	"github.com/perund/perund/daemon"
	"github.com/perund/perund/node"
	"github.com/perund/perund/rpc"
)

// API serves n's API with cfg on a free loopback port until the test
// ends (the server shuts down before the node closes), as perund serves
// it (daemon.ServeAPI); hook, if set,
// changes the server before it serves. It returns the /rpc URL (wss://
// when cfg has TLS) and the server.
func API(t testing.TB, n *node.Node, cfg config.RPC, hook func(*rpc.Server)) (string, *rpc.Server) {
	t.Helper()
	srv := rpc.NewServer(n, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if hook != nil {
		hook(srv)
	}
	cfg.Listen = "127.0.0.1:0"
	api, err := daemon.ServeAPI(srv, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, api.Shutdown(ctx))
	})
	return api.RPCURL(), srv
}
