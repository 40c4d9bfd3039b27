package node_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/config"
	"github.com/perund/perund/node"
)

// A data dir written for one set of contracts is refused by a node on
// other contracts, with an error that says what differs.
func TestDataDirOfOtherContractsRefused(t *testing.T) {
	t.Parallel()
	v, _ := newEnv(t)
	dir := t.TempDir()
	n := v.nodeIn(t, dir, nil)
	require.NotNil(t, n)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, other, err := v.chain.Deploy(ctx)
	require.NoError(t, err)
	cfg, err := config.Load(config.Sources{Flags: map[string]any{"dataDir": dir, "keystore.lightKdf": true, "comm.listen": "127.0.0.1:0"}})
	require.NoError(t, err)
	opts := node.Options{Config: cfg, Chain: v.chain, Contracts: other,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	_, err = node.New(ctx, opts)
	require.ErrorContains(t, err, "channels.db", "a second node on a data dir in use is refused")
	require.NoError(t, n.Close(ctx))
	_, err = node.New(ctx, opts)
	var mm *chain.MismatchError
	require.True(t, errors.As(err, &mm), "got %v", err)
	require.Len(t, mm.Differences, 2, "adjudicator and ETH asset holder: %v", mm.Differences)
	require.Contains(t, err.Error(), other.Adjudicator.Hex())
}
