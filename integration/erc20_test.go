package integration

import (
	"context"
	"fmt"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
)

// TestERC20ForceClose: a PRN channel on anvil; bob's process dies; alice
// force-closes and gets her latest token balance.
func TestERC20ForceClose(t *testing.T) {
	a := startAnvil(t)
	ethc := a.rpc(t)
	c, prn := deployWithToken(t, a)
	assets := fmt.Sprintf("assets:\n  - symbol: PRN\n    token: %q\n    assetHolder: %q\n    decimals: 18\n", prn.Token.Hex(), prn.Holder.Hex())
	alice, bob, sa, sb, _ := pairWith(t, a, c, assets)

	var sub string
	sb.OK("perun_subscribe", []string{"proposals"}, &sub)
	accepted := acceptAsync(t, sb, func(r map[string]any) bool { return r["status"] == "pending" && r["asset"] == "PRN" })
	defer accepted()
	var ch channelView
	sa.OK("channel_open", map[string]any{"peer": "bob", "asset": "PRN", "balance": map[string]string{"mine": eth(100).String(), "theirs": eth(100).String()}}, &ch)
	for i := 0; i < 5; i++ {
		sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(1).String()}, nil)
	}
	bob.kill()
	closed := closeWhileTimePasses(t, a, ethc, sa, "channel_forceClose", ch.ChannelID)
	require.Equal(t, "closed", closed.State)
	require.Equal(t, eth(95).String(), closed.Balance["mine"])

	cl, err := chain.Dial(context.Background(), a.url)
	require.NoError(t, err)
	defer cl.Close()
	bal, err := chain.TokenBalance(context.Background(), cl, prn.Token, alice.addr)
	require.NoError(t, err)
	require.Equal(t, new(big.Int).Sub(eth(1000), eth(5)).String(), bal.String(), "alice's PRN: 1000 - 5 paid")
}
