package integration

import (
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/stretchr/testify/require"
)

// TestUnfundableProposal (issue 18.6) on anvil, two nodes: alice asks bob
// to put in more ETH than he holds. Bob's proposal says it is not
// fundable and by how much; accepting it is 1007 with what he has and
// needs, before any transaction, and it stays pending; rejecting it
// answers alice's channel_open with the rejection and empties bob's list.
func TestUnfundableProposal(t *testing.T) {
	a := startAnvil(t)
	ethc := a.rpc(t)
	c := deploy(t, a)
	alice := newProc(t, "alice", keyAlice, a, c)
	bob := newProc(t, "bob", keyBob, a, c)
	sa, sb := alice.login(t), bob.login(t)
	sa.OK("contacts_add", map[string]any{"alias": "bob", "address": bob.addr.Hex(), "commAddress": sb.CommAddress}, nil)
	sb.OK("contacts_add", map[string]any{"alias": "alice", "address": alice.addr.Hex(), "commAddress": sa.CommAddress}, nil)
	sb.OK("perun_subscribe", []string{"proposals"}, nil)

	have := balanceOf(t, ethc, bob.addr)
	ask := new(big.Int).Add(have, eth(1))
	opened := make(chan map[string]any, 1)
	go func() {
		opened <- sa.Call("channel_open", map[string]any{"peer": "bob",
			"balance": map[string]string{"mine": eth(1).String(), "theirs": ask.String()}})
	}()
	pr := sb.Note(time.Minute, func(r map[string]any) bool { return r["status"] == "pending" })
	require.Equal(t, false, pr["fundable"])
	short, ok := new(big.Int).SetString(pr["shortfall"].(string), 10)
	require.True(t, ok)
	require.Positive(t, short.Sign())
	require.LessOrEqual(t, short.Cmp(eth(1)), 0, "the shortfall is what bob lacks: at most the 1 ETH more than his balance")

	from := blockNumber(t, ethc) + 1
	e := sb.Fail("proposal_respond", map[string]any{"proposalId": pr["proposalId"], "accept": true}, 1007)
	data := e["data"].(map[string]any)
	require.Equal(t, ask.String(), data["needed"])
	require.NotEmpty(t, data["available"])
	var list []map[string]any
	sb.OK("proposal_list", nil, &list)
	require.Len(t, list, 1, "the proposal stays pending")
	for n := from; n <= blockNumber(t, ethc); n++ {
		var b struct {
			Transactions []string `json:"transactions"`
		}
		require.NoError(t, ethc.Call(&b, "eth_getBlockByNumber", hexutil.Uint64(n), false))
		require.Empty(t, b.Transactions, "no transaction was sent for the refused accept")
	}

	sb.OK("proposal_respond", map[string]any{"proposalId": pr["proposalId"], "accept": false, "reason": "cannot fund it"}, nil)
	res := <-opened
	oe, ok := res["error"].(map[string]any)
	require.True(t, ok, "channel_open fails: %v", res)
	require.EqualValues(t, 1005, oe["code"])
	require.Contains(t, oe["message"], "cannot fund it")
	sb.OK("proposal_list", nil, &list)
	require.Empty(t, list, "an answered proposal leaves the list")
}
