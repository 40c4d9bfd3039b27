package integration

import (
	"context"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	gethrpc "github.com/ethereum/go-ethereum/rpc"
	"github.com/perun-network/perun-eth-backend/bindings/adjudicator"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	ethwallet "github.com/perun-network/perun-eth-backend/wallet"
	"github.com/perun-network/perun-eth-backend/wallet/simple"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/wallet"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/store"
	// The persisted peers are decoded with perund's wire address type.
	_ "github.com/perund/perund/wireid"
)

// registerStale plays a cheating bob: see registerStaleBy.
func registerStale(t *testing.T, a *anvil, bob *proc, c chain.Contracts, chID string, version uint64, bals [2]*big.Int) {
	registerStaleBy(t, a, bob, keyBob, keyBob, c, chID, version, bals)
}

// registerStaleBy plays a cheating party: from its (stopped) node's
// database it takes the channel's parameters, builds an old version with
// balances bals (alice's first), signs it with both keys (the test knows
// them: a state both parties once signed) and registers it on the
// adjudicator from the cheater's own account. The channel is between
// alice (index 0) and the holder of peerKey. It returns the registration.
func registerStaleBy(t *testing.T, a *anvil, cheater *proc, cheaterKey, peerKey string, c chain.Contracts, chID string, version uint64, bals [2]*big.Int) channel.AdjudicatorReq {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.OpenLevelDB(filepath.Join(cheater.dir, "data", "channels.db"), store.LevelDBOptions{})
	require.NoError(t, err)
	defer st.Close()
	pr := st.User(cheater.addr)
	var id channel.ID
	copy(id[:], common0x(t, chID))
	saved, err := pr.RestoreChannel(ctx, id)
	require.NoError(t, err)
	params := saved.Params()
	stale := saved.CurrentTX().State.Clone()
	stale.Version = version
	stale.IsFinal = false
	stale.Balances[0][0], stale.Balances[0][1] = bals[0], bals[1]

	tx := perundtest.SignAll(t, stale, perundtest.Keys(t, keyAlice, peerKey)...)
	cl, err := chain.Dial(ctx, a.url)
	require.NoError(t, err)
	defer cl.Close()
	chainID, err := cl.ChainID(ctx)
	require.NoError(t, err)
	chain.ResetNonce(chainID, cheater.addr)
	ck, err := crypto.HexToECDSA(cheaterKey)
	require.NoError(t, err)
	cb, _ := chain.DeployerBackend(cl, chainID, ck)
	adj := ethchannel.NewAdjudicator(cb, c.Adjudicator, cheater.addr, accounts.Account{Address: cheater.addr}, 1_000_000)
	req := channel.AdjudicatorReq{Params: params, Tx: tx}
	require.NoError(t, adj.Register(ctx, req, nil))
	return req
}

// concludeStaleBy concludes req (registered, its challenge period over)
// and withdraws the share of party idx, sent and signed by key.
func concludeStaleBy(t *testing.T, a *anvil, c chain.Contracts, key string, idx channel.Index, req channel.AdjudicatorReq) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pk, err := crypto.HexToECDSA(key)
	require.NoError(t, err)
	addr := crypto.PubkeyToAddress(pk.PublicKey)
	cl, err := chain.Dial(ctx, a.url)
	require.NoError(t, err)
	defer cl.Close()
	chainID, err := cl.ChainID(ctx)
	require.NoError(t, err)
	chain.ResetNonce(chainID, addr)
	cb, _ := chain.DeployerBackend(cl, chainID, pk)
	adj := ethchannel.NewAdjudicator(cb, c.Adjudicator, addr, accounts.Account{Address: addr}, 1_000_000)
	acc, err := simple.NewWallet(pk).Unlock(ethwallet.AsWalletAddr(addr))
	require.NoError(t, err)
	req.Idx = idx
	req.Acc = map[wallet.BackendID]wallet.Account{ethwallet.BackendID: acc}
	require.NoError(t, adj.Withdraw(ctx, req, nil))
}

// failedSince returns the hashes of the transactions that reverted in the
// blocks from block from on.
func failedSince(t *testing.T, ethc *gethrpc.Client, from uint64) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var head hexutil.Uint64
	require.NoError(t, ethc.CallContext(ctx, &head, "eth_blockNumber"))
	var failed []string
	for n := from; n <= uint64(head); n++ {
		var b struct {
			Transactions []string `json:"transactions"`
		}
		require.NoError(t, ethc.CallContext(ctx, &b, "eth_getBlockByNumber", hexutil.Uint64(n), false))
		for _, h := range b.Transactions {
			var r struct{ Status hexutil.Uint64 }
			require.NoError(t, ethc.CallContext(ctx, &r, "eth_getTransactionReceipt", h))
			if r.Status != 1 {
				failed = append(failed, h)
			}
		}
	}
	return failed
}

// blockNumber is the chain's head.
func blockNumber(t *testing.T, ethc *gethrpc.Client) uint64 {
	var head hexutil.Uint64
	require.NoError(t, ethc.CallContext(context.Background(), &head, "eth_blockNumber"))
	return uint64(head)
}

// onChainVersion reads the version registered on the adjudicator for a
// channel (0 if none).
func onChainVersion(t *testing.T, a *anvil, c chain.Contracts, chID string) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := chain.Dial(ctx, a.url)
	require.NoError(t, err)
	defer cl.Close()
	caller, err := adjudicator.NewAdjudicatorCaller(c.Adjudicator, cl)
	require.NoError(t, err)
	var id [32]byte
	copy(id[:], common0x(t, chID))
	d, err := caller.Disputes(&bind.CallOpts{Context: ctx}, id)
	require.NoError(t, err)
	return d.Version
}

// TestStaleStateRefuted: bob registers an old state; alice's node refutes
// it with the latest one without being asked and ends with her latest
// balance.
func TestStaleStateRefuted(t *testing.T) {
	a := startAnvil(t)
	ethc := a.rpc(t)
	c := deploy(t, a)
	alice, bob, sa, sb, ch := pairWith(t, a, c)
	// bob pays alice 5 ETH in 5 payments: latest v5 is alice 15, bob 5.
	for i := 0; i < 5; i++ {
		sb.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(1).String()}, nil)
	}
	sa.OK("perun_subscribe", []string{"disputes"}, nil)
	var v channelView
	require.Eventually(t, func() bool {
		sa.OK("channel_get", map[string]any{"channelId": ch.ChannelID}, &v)
		return v.Version == 5
	}, 10*time.Second, 10*time.Millisecond)
	bob.kill()
	start := balanceOf(t, ethc, alice.addr)
	registerStale(t, a, bob, c, ch.ChannelID, 1, [2]*big.Int{eth(11), eth(9)})

	ev := sa.Note(time.Minute, func(r map[string]any) bool { return r["event"] == "registered" })
	require.EqualValues(t, 1, ev["version"])
	require.Equal(t, true, ev["byPeer"])
	require.Equal(t, "refuting with version 5", ev["response"])
	require.Equal(t, "sending", ev["refutation"])
	ref := sa.Note(time.Minute, func(r map[string]any) bool { return r["event"] == "registered" && r["version"] == float64(5) })
	require.NotEmpty(t, ref["timeout"])
	require.Equal(t, "mined", ref["refutation"], "refuted only once the refutation is on chain")
	require.Equal(t, true, ref["byWatcher"])

	// Let the challenge period pass; alice's node concludes and withdraws.
	closed := closedWhileTimePasses(t, a, ethc, sa, ch.ChannelID)
	require.Equal(t, eth(15).String(), closed.Balance["mine"])
	require.Equal(t, "dispute", closed.ClosedBy)
	want := new(big.Int).Add(start, eth(15))
	want.Sub(want, gasCost(t, ethc, closed.TxHashes[1:]))
	require.Equal(t, want.String(), balanceOf(t, ethc, alice.addr).String(), "alice gets every wei of the latest state")
}

// TestCloseFallsBackToDispute: the peer is gone, so channel_close settles
// through the dispute path and says so.
func TestCloseFallsBackToDispute(t *testing.T) {
	a := startAnvil(t)
	ethc := a.rpc(t)
	c := deploy(t, a)
	_, bob, sa, _, ch := pairWith(t, a, c)
	sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(2).String()}, nil)
	bob.kill()
	closed := closeWhileTimePasses(t, a, ethc, sa, "channel_close", ch.ChannelID)
	require.Equal(t, "closed", closed.State)
	require.Equal(t, "dispute", closed.ClosedBy)
	require.Equal(t, eth(8).String(), closed.Balance["mine"])
}

// TestPeerForceCloseReflected: bob force-closes; alice's node withdraws her
// share on its own and her channel ends closed.
func TestPeerForceCloseReflected(t *testing.T) {
	a := startAnvil(t)
	ethc := a.rpc(t)
	c := deploy(t, a)
	alice, _, sa, sb, ch := pairWith(t, a, c)
	sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(3).String()}, nil)
	sa.OK("perun_subscribe", []string{"channels"}, nil)
	start := balanceOf(t, ethc, alice.addr)
	bobClosed := closeWhileTimePasses(t, a, ethc, sb, "channel_forceClose", ch.ChannelID)
	require.Equal(t, eth(13).String(), bobClosed.Balance["mine"])
	sa.Note(time.Minute, func(r map[string]any) bool { return r["channelId"] == ch.ChannelID && r["state"] == "closed" })
	var v channelView
	sa.OK("channel_get", map[string]any{"channelId": ch.ChannelID}, &v)
	require.Equal(t, "closed", v.State)
	want := new(big.Int).Add(start, eth(7))
	want.Sub(want, gasCost(t, ethc, v.TxHashes[1:]))
	require.Equal(t, want.String(), balanceOf(t, ethc, alice.addr).String())
}

func common0x(t *testing.T, s string) []byte {
	b, err := hexutil.Decode(s)
	require.NoError(t, err)
	return b
}

// TestChainRestart: the chain goes away and comes back (anvil restarted
// with its state); /healthz reports it, and alice's node reconnects and
// still refutes a stale registration.
func TestChainRestart(t *testing.T) {
	a := startAnvil(t)
	c := deploy(t, a)
	alice, bob, sa, sb, ch := pairWith(t, a, c)
	for i := 0; i < 3; i++ {
		sb.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(1).String()}, nil)
	}
	sa.OK("perun_subscribe", []string{"disputes"}, nil)
	bob.kill()

	a.stop()
	require.Eventually(t, func() bool { return health(alice) == 503 }, 30*time.Second, 100*time.Millisecond, "healthz reports the chain down")
	// Off-chain calls still answer; on-chain ones fail with 1008.
	sa.OK("channel_get", map[string]any{"channelId": ch.ChannelID}, nil)
	sa.Fail("chain_balance", nil, 1008)
	a.start(t)
	require.Eventually(t, func() bool { return health(alice) == 200 }, 30*time.Second, 100*time.Millisecond, "node reconnects")

	ethc := a.rpc(t)
	registerStale(t, a, bob, c, ch.ChannelID, 1, [2]*big.Int{eth(11), eth(9)})
	ev := sa.Note(time.Minute, func(r map[string]any) bool { return r["event"] == "registered" && r["version"] == float64(1) })
	require.Equal(t, "refuting with version 3", ev["response"])
	closed := closedWhileTimePasses(t, a, ethc, sa, ch.ChannelID)
	require.Equal(t, eth(13).String(), closed.Balance["mine"])
}
