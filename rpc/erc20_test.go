package rpc_test

import (
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
)

func tokenBalance(t *testing.T, c *client, sym string) *big.Int {
	var r map[string]string
	c.ok("chain_balance", map[string]any{"asset": sym}, &r)
	require.Equal(t, sym, r["asset"])
	v, ok := new(big.Int).SetString(r["balance"], 10)
	require.True(t, ok)
	return v
}

func openAsset(t *testing.T, a, b *client, sym string, mine, theirs *big.Int) channelView {
	var sub string
	b.ok("perun_subscribe", []string{"proposals"}, &sub)
	done := make(chan channelView, 1)
	go func() {
		p := b.note(func(r map[string]any) bool { return r["status"] == "pending" && r["asset"] == sym })
		var ch channelView
		b.ok("proposal_respond", map[string]any{"proposalId": p["proposalId"], "accept": true}, &ch)
		done <- ch
	}()
	var ch channelView
	a.ok("channel_open", map[string]any{"peer": "bob", "asset": sym, "balance": map[string]string{"mine": mine.String(), "theirs": theirs.String()}}, &ch)
	<-done
	b.ok("perun_unsubscribe", []string{sub}, nil)
	return ch
}

// TestERC20Channel: a PRN channel beside an ETH channel between the same
// pair; payments on both at once; the close settles the exact token amounts.
func TestERC20Channel(t *testing.T) {
	f := newFixture(t, map[string]any{"channel.autoAcceptClose": true})
	alice := login(t, f, f.alice, "alice")
	bob := login(t, f, f.bob, "bob")
	var info struct {
		Assets []struct {
			Symbol   string `json:"symbol"`
			Decimals int    `json:"decimals"`
		} `json:"assets"`
		AssetHolders map[string]string `json:"assetHolders"`
	}
	alice.ok("node_info", nil, &info)
	require.Len(t, info.Assets, 2)
	require.Equal(t, "PRN", info.Assets[1].Symbol)
	require.Equal(t, 18, info.Assets[1].Decimals)
	require.Contains(t, info.AssetHolders, "PRN")

	startA, startB := tokenBalance(t, alice, "PRN"), tokenBalance(t, bob, "PRN")
	require.Equal(t, eth(1000).String(), startA.String())
	prn := openAsset(t, alice, bob, "PRN", eth(100), eth(50))
	require.Equal(t, "PRN", prn.Asset)
	ethCh := openAsset(t, alice, bob, "ETH", eth(30), eth(1))
	require.Equal(t, "ETH", ethCh.Asset)
	require.Equal(t, new(big.Int).Sub(startA, eth(100)).String(), tokenBalance(t, alice, "PRN").String())

	var wg sync.WaitGroup
	for _, ch := range []string{prn.ChannelID, ethCh.ChannelID} {
		wg.Add(1)
		go func(ch string) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				alice.ok("channel_send", map[string]any{"channelId": ch, "amount": chain.Ether.String()}, nil)
			}
		}(ch)
	}
	wg.Wait()
	// Paying more than the channel holds: 1007.
	alice.fail("channel_send", map[string]any{"channelId": prn.ChannelID, "amount": eth(1000).String()}, 1007)

	var closed channelView
	alice.ok("channel_close", map[string]any{"channelId": prn.ChannelID}, &closed)
	require.Equal(t, "closed", closed.State)
	require.Equal(t, eth(80).String(), closed.Balance["mine"])
	require.Eventually(t, func() bool {
		var v channelView
		bob.ok("channel_get", map[string]any{"channelId": prn.ChannelID}, &v)
		return v.State == "closed"
	}, time.Minute, 50*time.Millisecond)
	require.Equal(t, new(big.Int).Sub(startA, eth(20)).String(), tokenBalance(t, alice, "PRN").String(), "alice: exact token amount")
	require.Equal(t, new(big.Int).Add(startB, eth(20)).String(), tokenBalance(t, bob, "PRN").String(), "bob: exact token amount")

	// The ETH channel is untouched by the PRN close.
	var e channelView
	alice.ok("channel_get", map[string]any{"channelId": ethCh.ChannelID}, &e)
	require.Equal(t, "open", e.State)
	require.Equal(t, uint64(20), e.Version)

	// Not enough tokens on-chain: 1007 before any transaction.
	alice.fail("channel_open", map[string]any{"peer": "bob", "asset": "PRN", "balance": map[string]string{"mine": eth(5000).String(), "theirs": "0"}}, 1007)
	alice.fail("chain_balance", map[string]any{"asset": "DOGE"}, -32602)

}
