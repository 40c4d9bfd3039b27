package integration

import (
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
)

func eth(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), chain.Ether) }

// TestCooperative: open, 1000 payments in both directions at once, close;
// on-chain balances exact, gas read from the receipts.
func TestCooperative(t *testing.T) {
	a := startAnvil(t)
	ethc := a.rpc(t)
	alice, bob, sa, sb, ch := pair(t, a)
	_ = alice
	_ = bob
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, s := range []*session{sa, sb} {
		wg.Add(1)
		go func(s *session, amount string) {
			defer wg.Done()
			for j := 0; j < 500; j++ {
				if _, err := s.TryCall("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": amount}, time.Minute); err != nil {
					errs <- err
					return
				}
			}
		}(s, []string{"3000", "1000"}[i])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err, "payments of both sides at once")
	}
	// alice paid 500×3000, bob 500×1000: alice is down 1,000,000 wei.
	sb.OK("perun_subscribe", []string{"updates"}, nil)
	accepted := acceptAsync(t, sb, func(r map[string]any) bool { return r["kind"] == "close" && r["status"] == "pending" })
	defer accepted()
	startA := new(big.Int).Add(balanceOf(t, ethc, alice.addr), big.NewInt(0))
	var closed channelView
	sa.OK("channel_close", map[string]any{"channelId": ch.ChannelID}, &closed)
	require.Equal(t, "closed", closed.State)
	require.Equal(t, "agreement", closed.ClosedBy)
	require.Equal(t, uint64(1001), closed.Version)
	wantMine := new(big.Int).Sub(eth(10), big.NewInt(1_000_000))
	require.Equal(t, wantMine.String(), closed.Balance["mine"])

	var bv channelView
	require.Eventually(t, func() bool {
		sb.OK("channel_get", map[string]any{"channelId": ch.ChannelID}, &bv)
		return bv.State == "closed"
	}, time.Minute, 200*time.Millisecond)
	// Alice's balance: before the close + her share − gas of her close txs
	// (her deposit tx was before startA).
	closeTxs := closed.TxHashes[1:]
	want := new(big.Int).Add(startA, wantMine)
	want.Sub(want, gasCost(t, ethc, closeTxs))
	require.Equal(t, want.String(), balanceOf(t, ethc, alice.addr).String())
	// Bob from genesis: 10000 ETH − 10 deposited + his share − all his gas.
	wantB := new(big.Int).Sub(eth(10000), eth(10))
	wantB.Add(wantB, new(big.Int).Add(eth(10), big.NewInt(1_000_000))).Sub(wantB, gasCost(t, ethc, bv.TxHashes))
	require.Equal(t, wantB.String(), balanceOf(t, ethc, bob.addr).String())
}

// TestForceCloseAfterPeerKilled: bob's process dies; alice force-closes
// and gets her latest balance.
func TestForceCloseAfterPeerKilled(t *testing.T) {
	a := startAnvil(t)
	ethc := a.rpc(t)
	alice, bob, sa, _, ch := pair(t, a)
	for i := 0; i < 5; i++ {
		sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(1).String()}, nil)
	}
	bob.kill()
	sa.OK("perun_subscribe", []string{"disputes"}, nil)
	start := balanceOf(t, ethc, alice.addr)
	t0 := time.Now()
	closed := closeWhileTimePasses(t, a, ethc, sa, "channel_forceClose", ch.ChannelID)
	reg := sa.Note(time.Second, func(r map[string]any) bool { return r["event"] == "registered" })
	require.EqualValues(t, 5, reg["version"])
	require.Equal(t, false, reg["byPeer"])
	require.NotEmpty(t, reg["timeout"])
	t.Logf("closed after %v", time.Since(t0))
	require.Equal(t, "closed", closed.State)
	require.Equal(t, "dispute", closed.ClosedBy)
	require.Equal(t, eth(5).String(), closed.Balance["mine"])
	sa.Note(time.Minute, func(r map[string]any) bool { return r["event"] == "concluded" })
	want := new(big.Int).Add(start, eth(5))
	want.Sub(want, gasCost(t, ethc, closed.TxHashes[1:]))
	require.Equal(t, want.String(), balanceOf(t, ethc, alice.addr).String())
}
