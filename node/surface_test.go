package node_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/config"
	"github.com/perund/perund/node"
)

// TestNodeSurface: what the API reads of a node, on a node with an ERC20
// asset, account creation and a starting phase: the health through
// start, a chain that stops answering and the close; node_info; accounts
// created (funded) and listed; on-chain balances of ETH and the token,
// of the user and of another address; an unknown asset named with the
// known ones.
func TestNodeSurface(t *testing.T) {
	t.Parallel()
	keys := freshKeys(t, 2)
	v, addrs := newEnv(t, keys...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := v.chain.ChainID(ctx)
	require.NoError(t, err)
	cb, dep := chain.DeployerBackend(v.chain, id, v.chain.Faucet())
	token, err := chain.DeployToken(ctx, cb, dep, []common.Address{addrs[0]}, eth(1000))
	require.NoError(t, err)
	prn, err := chain.SetupERC20(ctx, cb, config.ModeDeploy, v.c.Adjudicator, chain.Asset{Symbol: "PRN", Token: token, Decimals: 18}, dep)
	require.NoError(t, err)

	fc := &faultChain{Backend: v.chain}
	cfg, err := config.Load(config.Sources{Flags: map[string]any{
		"dataDir": t.TempDir(), "keystore.lightKdf": true, "comm.listen": "127.0.0.1:0", "allowAccountCreation": true,
	}})
	require.NoError(t, err)
	n, err := node.New(ctx, node.Options{
		Config: cfg, Chain: fc, Contracts: v.c, Assets: []chain.Asset{prn}, Version: "surface-test", Starting: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Fund:   func(ctx context.Context, a common.Address) error { return v.chain.Fund(ctx, a, eth(7)) },
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, n.Close(ctx))
	})

	// Health: starting until SetReady, then ready while the chain answers.
	h := n.Health(ctx)
	require.Equal(t, node.HealthStarting, h.Status)
	require.False(t, h.Ready())
	n.SetReady()
	require.True(t, n.Health(ctx).Ready())

	info := n.Info()
	require.Equal(t, "surface-test", info.Version)
	require.Equal(t, "1337", info.ChainID)
	require.Equal(t, v.c.Adjudicator.Hex(), info.Adjudicator)
	require.Equal(t, map[string]string{"ETH": v.c.AssetHolderETH.Hex(), "PRN": prn.Holder.Hex()}, info.AssetHolders)
	require.Len(t, info.Assets, 2)
	for _, a := range info.Assets {
		if a.Symbol == "PRN" {
			require.Equal(t, token.Hex(), a.Token)
			require.Equal(t, 18, int(a.Decimals))
		} else {
			require.Equal(t, "ETH", a.Symbol)
			require.Empty(t, a.Token)
		}
	}
	require.True(t, info.AccountCreation)
	require.Zero(t, info.Sessions)
	require.Equal(t, cfg.Channel.ChallengeDuration, info.ChallengeDuration)

	// Accounts: a new one is funded (dev) and listed; no empty password.
	var ia *node.InvalidArgError
	_, err = n.NewAccount(ctx, "")
	require.ErrorAs(t, err, &ia)
	require.Equal(t, "password", ia.Field)
	created, err := n.NewAccount(ctx, "pw")
	require.NoError(t, err)
	got, err := n.Balance(ctx, created)
	require.NoError(t, err)
	require.Equal(t, eth(7).String(), got.String())
	pk, err := crypto.HexToECDSA(keys[0])
	require.NoError(t, err)
	_, err = n.Keys().Import(pk, "alice")
	require.NoError(t, err)
	list, err := n.Accounts()
	require.NoError(t, err)
	require.ElementsMatch(t, []common.Address{created, addrs[0]}, list)

	// Balances as a session reads them: the user's token, another's ETH.
	s, err := n.OpenSession(ctx, addrs[0], "alice", false)
	require.NoError(t, err)
	require.Equal(t, 1, n.Info().Sessions)
	who, bal, err := s.Balance(ctx, nil, "PRN")
	require.NoError(t, err)
	require.Equal(t, addrs[0], who)
	require.Equal(t, eth(1000).String(), bal)
	who, bal, err = s.Balance(ctx, &addrs[1], "")
	require.NoError(t, err)
	require.Equal(t, addrs[1], who)
	require.Equal(t, eth(100).String(), bal)
	_, _, err = s.Balance(ctx, nil, "XYZ")
	require.ErrorAs(t, err, &ia)
	require.Equal(t, `invalid asset: unknown asset "XYZ" (known: [ETH PRN])`, err.Error())

	// A chain that does not answer: unhealthy, balances are chain errors.
	fc.readsDown.Store(true)
	h = n.Health(ctx)
	require.Equal(t, node.HealthChainUnreachable, h.Status)
	var ce *node.ChainError
	require.ErrorAs(t, h.Err, &ce)
	require.ErrorIs(t, h.Err, errInjected)
	_, err = n.Balance(ctx, addrs[0])
	require.ErrorAs(t, err, &ce)
	require.ErrorContains(t, err, addrs[0].Hex())
	fc.readsDown.Store(false)
	require.True(t, n.Health(ctx).Ready(), "ready again once the chain answers")

	require.NoError(t, n.Close(ctx))
	require.Equal(t, node.HealthStopping, n.Health(ctx).Status)
}

// TestAccountCreationDisabled: a node without allowAccountCreation refuses
// account_new as unauthorized and creates nothing.
func TestAccountCreationDisabled(t *testing.T) {
	t.Parallel()
	v, _ := newEnv(t)
	n, err := v.tryNode(t, t.TempDir())
	require.NoError(t, err)
	_, err = n.NewAccount(context.Background(), "pw")
	require.True(t, errors.Is(err, node.ErrUnauthorized), "%v", err)
	list, err := n.Accounts()
	require.NoError(t, err)
	require.Empty(t, list)
	require.False(t, n.Info().AccountCreation)
}
