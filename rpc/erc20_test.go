package rpc_test

import (
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/internal/perundtest"
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
	accepted := answer(b, func(r map[string]any) bool { return r["status"] == "pending" && r["asset"] == sym }, "proposal_respond", respond("proposal_respond"))
	var ch channelView
	a.ok("channel_open", map[string]any{"peer": "bob", "asset": sym, "balance": map[string]string{"mine": mine.String(), "theirs": theirs.String()}}, &ch)
	require.Equal(t, ch.ChannelID, awaitAnswer(t, accepted).result.(map[string]any)["channelId"])
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

	var sends []<-chan error
	for _, ch := range []string{prn.ChannelID, ethCh.ChannelID} {
		sends = append(sends, perundtest.Async(func() error {
			for i := 0; i < 20; i++ {
				if _, err := alice.TryCall("channel_send", map[string]any{"channelId": ch, "amount": chain.Ether.String()}, time.Minute); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	for _, s := range sends {
		require.NoError(t, perundtest.Recv(t, s, 5*time.Minute, "the payments"))
	}
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
