package node_test

import (
	"context"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/perun-network/perun-eth-backend/bindings/adjudicator"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	ethwallet "github.com/perun-network/perun-eth-backend/wallet"
	"github.com/perun-network/perun-eth-backend/wallet/simple"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/wallet"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
)

// concludeAs concludes tx (registered, its challenge period waited out)
// and withdraws the share of party idx, sent and signed by key.
func (v *env) concludeAs(t *testing.T, key string, idx channel.Index, params *channel.Params, tx channel.Transaction) {
	t.Helper()
	pk, err := crypto.HexToECDSA(key)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id, err := v.chain.ChainID(ctx)
	require.NoError(t, err)
	addr := crypto.PubkeyToAddress(pk.PublicKey)
	chain.ResetNonce(id, addr)
	cb, _ := chain.DeployerBackend(v.chain, id, pk)
	adj := ethchannel.NewAdjudicator(cb, v.c.Adjudicator, addr, accounts.Account{Address: addr}, 1_000_000)
	acc, err := simple.NewWallet(pk).Unlock(ethwallet.AsWalletAddr(addr))
	require.NoError(t, err)
	require.NoError(t, adj.Withdraw(ctx, channel.AdjudicatorReq{
		Params: params, Tx: tx, Idx: idx, Acc: map[wallet.BackendID]wallet.Account{ethwallet.BackendID: acc},
	}, nil))
}

// waitChallengeOver waits until the chain's time has passed the end of
// the challenge period registered for id.
func (v *env) waitChallengeOver(t *testing.T, id channel.ID) {
	t.Helper()
	caller, err := adjudicator.NewAdjudicatorCaller(v.c.Adjudicator, v.chain)
	require.NoError(t, err)
	d, err := caller.Disputes(&bind.CallOpts{Context: context.Background()}, id)
	require.NoError(t, err)
	require.NotZero(t, d.Timeout)
	require.Eventually(t, func() bool {
		h, err := v.chain.HeaderByNumber(context.Background(), nil)
		return err == nil && h.Time > d.Timeout
	}, time.Minute, 100*time.Millisecond)
}

// sentSince returns the transactions mined from block from on, by sender.
func (v *env) sentSince(t *testing.T, from uint64) map[common.Address][]*types.Receipt {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	head, err := v.chain.BlockNumber(ctx)
	require.NoError(t, err)
	signer := v.chain.Signer()
	out := map[common.Address][]*types.Receipt{}
	for n := from; n <= head; n++ {
		b, err := v.chain.BlockByNumber(ctx, new(big.Int).SetUint64(n))
		require.NoError(t, err)
		for _, tx := range b.Transactions() {
			r, err := v.chain.TransactionReceipt(ctx, tx.Hash())
			require.NoError(t, err)
			sender, err := types.Sender(signer, tx)
			require.NoError(t, err)
			out[sender] = append(out[sender], r)
		}
	}
	return out
}

// balanceNow returns addrs' balances at the chain's head and the number of
// the next block: what requireWithdrew takes as before and from. (The
// head's own transactions are in its balance: counting from the head
// would charge their gas twice, and reading the balance after the head
// would miss a block mined in between.)
func (v *env) balanceNow(t *testing.T, addrs ...common.Address) (from uint64, before []*big.Int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	head, err := v.chain.BlockNumber(ctx)
	require.NoError(t, err)
	for _, a := range addrs {
		b, err := v.chain.BalanceAt(ctx, a, new(big.Int).SetUint64(head))
		require.NoError(t, err)
		before = append(before, b)
	}
	return head + 1, before
}

// gasPaid is what the transactions of rs cost their sender.
func gasPaid(rs []*types.Receipt) *big.Int {
	gas := new(big.Int)
	for _, r := range rs {
		gas.Add(gas, new(big.Int).Mul(new(big.Int).SetUint64(r.GasUsed), r.EffectiveGasPrice))
	}
	return gas
}

// requireWithdrew checks that addr sent transactions from block from on,
// that each succeeded, and that addr's on-chain balance is before plus
// share less what they cost: the share withdrawn to the wei.
func (v *env) requireWithdrew(t *testing.T, addr common.Address, before, share *big.Int, from uint64, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	after, err := v.chain.BalanceAt(ctx, addr, nil)
	require.NoError(t, err)
	sent := v.sentSince(t, from)[addr]
	require.NotEmpty(t, sent, "%s: no transaction of %s", msg, addr.Hex())
	for _, r := range sent {
		require.Equal(t, types.ReceiptStatusSuccessful, r.Status, msg)
	}
	want := new(big.Int).Add(before, share)
	require.Equal(t, want.Sub(want, gasPaid(sent)).String(), after.String(), msg)
}

// TestLostDisputeAdopted is issue 18's lost dispute: bob's node is down
// while alice registers an old state (version 1, in which she holds 2 ETH
// more than in the latest, version 3), waits out the challenge period,
// concludes it and withdraws. When bob's node is back and bob logs in,
// the node does not try to register or conclude version 3 (it would only
// revert): it withdraws bob's share of version 1 in one transaction and
// shows the channel closed by dispute at version 1 beside the latest
// state; channel_close answers at once with that. When alice does not
// conclude either, bob's node concludes version 1 itself (from the
// registration's calldata) once the challenge period and a grace are
// over, then withdraws.
func TestLostDisputeAdopted(t *testing.T) {
	for _, tc := range []struct {
		name string
		// aliceConcludes: alice concludes her old state and withdraws;
		// otherwise nobody does and bob's node concludes it itself after
		// the challenge period (and its grace), then withdraws.
		aliceConcludes bool
	}{
		{"alice concluded", true},
		{"nobody concluded", false},
	} {
		// Not parallel: both cases use alice's account on chains with the
		// same id (perun-eth-backend's nonce expectations are process-wide).
		t.Run(tc.name, func(t *testing.T) { lostDispute(t, tc.aliceConcludes) })
	}
}

func lostDispute(t *testing.T, aliceConcludes bool) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	dirA, dirB := t.TempDir(), t.TempDir()
	na := v.nodeIn(t, dirA, map[string]string{keyAlice: "alice"})
	nb := v.nodeIn(t, dirB, map[string]string{keyBob: "bob"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	alice, bob := loginPair(t, na, nb, addrs)
	ch := openAcceptedWith(ctx, t, alice, bob, eth(10), eth(10), 10)
	for i := 0; i < 3; i++ {
		_, err := alice.Send(ctx, ch.ChannelID, eth(1))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		c, err := bob.Channel(ch.ChannelID)
		return err == nil && c.Version == 3
	}, 10*time.Second, 5*time.Millisecond)
	params, latest, err := alice.ChannelStateForTest(ch.ChannelID)
	require.NoError(t, err)

	// Both nodes go away: alice's would refute her, bob's is down.
	require.NoError(t, na.Close(ctx))
	require.NoError(t, nb.Close(ctx))
	stale := staleState(t, params, latest, 1, eth(9), keyAlice, keyBob)
	v.registerAs(t, keyAlice, params, stale)
	if aliceConcludes {
		v.concludeAs(t, keyAlice, 0, params, stale)
	} else {
		v.waitChallengeOver(t, params.ID())
	}

	before, err := v.chain.BalanceAt(ctx, addrs[1], nil)
	require.NoError(t, err)
	from, err := v.chain.BlockNumber(ctx)
	require.NoError(t, err)
	rec, lg := newLogRecorder()
	nb = v.nodeWith(t, dirB, map[string]string{keyBob: "bob"}, testNode{log: lg})
	bob, err = nb.OpenSession(ctx, addrs[1], "bob", false)
	require.NoError(t, err)
	sub, err := bob.Hub().Subscribe(subscriptions.Disputes)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		c, err := bob.Channel(ch.ChannelID)
		return err == nil && c.State == node.StateClosed
	}, time.Minute, 50*time.Millisecond, "bob's channel is closed with the chain's outcome")
	closed, err := bob.Close(ctx, ch.ChannelID)
	require.NoError(t, err, "closing a closed channel answers with how it closed")
	require.Equal(t, "dispute", closed.ClosedBy)
	require.EqualValues(t, 1, closed.Version)
	require.Equal(t, eth(11).String(), closed.Balance.Mine)
	require.Equal(t, eth(9).String(), closed.Balance.Theirs)
	require.NotNil(t, closed.Outcome)
	require.EqualValues(t, 3, closed.LatestVersion)
	require.Equal(t, eth(13).String(), closed.LatestBalance.Mine)
	require.Equal(t, new(big.Int).Neg(eth(2)).String(), closed.Difference)

	sent := v.sentSince(t, from+1)
	want := 1 // the withdrawal
	if !aliceConcludes {
		want = 2 // the conclusion of version 1, then the withdrawal
	}
	require.Len(t, sent[addrs[1]], want, "bob's node sent no transaction that could only revert")
	w := sent[addrs[1]][want-1]
	require.Equal(t, types.ReceiptStatusSuccessful, w.Status)
	require.Contains(t, closed.TxHashes, w.TxHash.Hex())
	// Every transaction is logged once with its purpose and outcome.
	require.Equal(t, 1, rec.count("transaction sent", "purpose", "withdraw", "tx", w.TxHash.Hex()))
	require.Equal(t, 1, rec.count("transaction mined", "purpose", "withdraw", "tx", w.TxHash.Hex()))
	require.Zero(t, rec.count("transaction reverted"))
	for sender, rs := range sent {
		for _, r := range rs {
			require.Equal(t, types.ReceiptStatusSuccessful, r.Status, "no reverted transaction (sender %s)", sender.Hex())
		}
	}
	after, err := v.chain.BalanceAt(ctx, addrs[1], nil)
	require.NoError(t, err)
	wantBal := new(big.Int).Add(before, eth(11))
	require.Equal(t, wantBal.Sub(wantBal, gasPaid(sent[addrs[1]])).String(), after.String(), "bob withdrew his version-1 share to the wei")

	var withdrawn *node.DisputeEvent
	for withdrawn == nil {
		select {
		case ev := <-sub.Events():
			if de := ev.(node.DisputeEvent); de.Event == node.DisputeWithdrawn {
				withdrawn = &de
			}
		case <-ctx.Done():
			t.Fatal("no withdrawn event")
		}
	}
	require.EqualValues(t, 1, withdrawn.Version)
	require.Equal(t, eth(11).String(), withdrawn.Amount)
	require.Equal(t, w.TxHash.Hex(), withdrawn.TxHash)
	log, err := bob.Disputes(ch.ChannelID)
	require.NoError(t, err)
	require.Equal(t, node.DisputeWithdrawn, log[len(log)-1].Event)

	// The adopted channel is gone from go-perun's database: a restart does
	// not bring it back.
	require.NoError(t, nb.Close(ctx))
	nb = v.nodeIn(t, dirB, map[string]string{keyBob: "bob"})
	require.Zero(t, nb.WatchStats().Watched)
	bob, err = nb.OpenSession(ctx, addrs[1], "bob", false)
	require.NoError(t, err)
	c, err := bob.Channel(ch.ChannelID)
	require.NoError(t, err)
	require.Equal(t, node.StateClosed, c.State)
	require.EqualValues(t, 1, c.Version)
}

// blackhole listens at addr, accepts connections and never answers, like
// a peer's host that is up while its node hangs. It stops with the test.
func blackhole(t *testing.T, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
}

// TestLoginDoesNotWaitForUnreachablePeer (issue 18.8): bob's node restarts
// while alice's host accepts connections but never answers, and its dial
// timeout is long. Opening bob's session does not wait for the sync with
// alice (it would outlast the login's deadline): the channel is restored
// as stored and reported unsynced.
func TestLoginDoesNotWaitForUnreachablePeer(t *testing.T) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	dirA, dirB := t.TempDir(), t.TempDir()
	na := v.nodeIn(t, dirA, map[string]string{keyAlice: "alice"})
	nb := v.nodeIn(t, dirB, map[string]string{keyBob: "bob"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, bob := loginPair(t, na, nb, addrs)
	ch := openAccepted(ctx, t, alice, bob, eth(10), eth(10))
	aliceAt := alice.CommAddress()
	require.NoError(t, na.Close(ctx))
	require.NoError(t, nb.Close(ctx))
	blackhole(t, aliceAt)

	nb = v.nodeWith(t, dirB, map[string]string{keyBob: "bob"}, testNode{flags: map[string]any{"comm.dialTimeout": "2m"}})
	lctx, lcancel := context.WithTimeout(ctx, 20*time.Second)
	defer lcancel()
	began := time.Now()
	bob, err := nb.OpenSession(lctx, addrs[1], "bob", false)
	require.NoError(t, err)
	t.Logf("session opened in %v", time.Since(began))
	// Waiting for the sync would have taken the login's whole deadline.
	require.NoError(t, lctx.Err(), "the login does not wait for a peer that does not answer")
	got, err := bob.Channel(ch.ChannelID)
	require.NoError(t, err)
	require.Equal(t, node.StateOpen, got.State)
	require.True(t, got.Unsynced, "the channel says that it is not synced with its peer")
}
