package rpc_test

import (
	"context"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/node"
)

type channelView struct {
	ChannelID string            `json:"channelId"`
	Asset     string            `json:"asset"`
	Peer      string            `json:"peer"`
	Balance   map[string]string `json:"balance"`
	Version   uint64            `json:"version"`
	State     string            `json:"state"`
	TxHashes  []string          `json:"txHashes"`
	ClosedBy  string            `json:"closedBy"`
}

func login(t *testing.T, f *fixture, addr common.Address, pw string) *client {
	c := dial(t, f.url)
	c.ok("session_open", map[string]any{"account": addr.Hex(), "password": pw}, nil)
	return c
}

// gasCost sums what the transactions cost their sender in gas.
func gasCost(t *testing.T, e *chain.Embedded, hashes []string) *big.Int {
	ctx := context.Background()
	total := new(big.Int)
	for _, h := range hashes {
		r, err := e.TransactionReceipt(ctx, common.HexToHash(h))
		require.NoError(t, err)
		tx, _, err := e.TransactionByHash(ctx, common.HexToHash(h))
		require.NoError(t, err)
		blk, err := e.BlockByNumber(ctx, r.BlockNumber)
		require.NoError(t, err)
		price := effectivePrice(tx, blk.BaseFee())
		total.Add(total, new(big.Int).Mul(price, new(big.Int).SetUint64(r.GasUsed)))
	}
	return total
}

func effectivePrice(tx *types.Transaction, base *big.Int) *big.Int {
	if base == nil {
		return tx.GasPrice()
	}
	p := new(big.Int).Add(base, tx.GasTipCap())
	if p.Cmp(tx.GasFeeCap()) > 0 {
		return tx.GasFeeCap()
	}
	return p
}

func balance(t *testing.T, c *client) *big.Int {
	var r map[string]string
	c.ok("chain_balance", nil, &r)
	v, ok := new(big.Int).SetString(r["balance"], 10)
	require.True(t, ok)
	return v
}

// TestEndToEnd: open 10/10, 100 payments of 0.01 ETH, a request of 1 ETH,
// close; on-chain balances exact up to the gas of each side's transactions.
func TestEndToEnd(t *testing.T) {
	f := newFixture(t, nil)
	alice := login(t, f, f.alice, "alice")
	bob := login(t, f, f.bob, "bob")
	startA, startB := balance(t, alice), balance(t, bob)
	for _, topic := range []string{"proposals", "updates", "channels"} {
		var id string
		bob.ok("perun_subscribe", []string{topic}, &id)
		require.Regexp(t, "^0x[0-9a-f]+$", id)
	}
	alice.ok("perun_subscribe", map[string]any{"topic": "updates"}, nil)

	var opened channelView
	bobAccepts := answer(bob, func(r map[string]any) bool { return r["proposalId"] != nil && r["status"] == "pending" },
		"proposal_respond", respond("proposal_respond"))
	alice.ok("channel_open", map[string]any{"peer": "bob", "balance": map[string]string{"mine": eth(10).String(), "theirs": eth(10).String()}}, &opened)
	require.Equal(t, "alice", awaitAnswer(t, bobAccepts).note["peer"])
	require.Equal(t, "open", opened.State)
	require.Equal(t, "bob", opened.Peer)

	cent := big.NewInt(1e16)
	for i := 0; i < 100; i++ {
		alice.ok("channel_send", map[string]any{"channelId": opened.ChannelID, "amount": cent.String()}, nil)
	}
	// bob saw every payment on updates and channels.
	seenUpdates, seenChannels := 0, 0
	for seenUpdates < 100 || seenChannels < 100 {
		n := perundtest.Recv(t, bob.Notes, time.Minute, fmt.Sprintf("bob's notification (%d updates, %d channel changes so far)", seenUpdates, seenChannels))
		r := n["params"].(map[string]any)["result"].(map[string]any)
		if r["kind"] == "payment" && r["status"] == "accepted" {
			seenUpdates++
		}
		if r["channelId"] == opened.ChannelID && r["version"] != nil && r["kind"] == nil && r["state"] == "open" {
			seenChannels++
		}
	}

	// bob requests 1 ETH; alice accepts.
	aliceAccepts := answer(alice, func(r map[string]any) bool { return r["kind"] == "request" && r["status"] == "pending" },
		"update_respond", respond("update_respond"))
	var afterReq channelView
	bob.ok("channel_request", map[string]any{"channelId": opened.ChannelID, "amount": eth(1).String()}, &afterReq)
	require.Equal(t, eth(1).String(), awaitAnswer(t, aliceAccepts).note["amount"])
	require.Equal(t, uint64(101), afterReq.Version)
	require.Equal(t, eth(12).String(), afterReq.Balance["mine"])

	// alice closes; bob agrees to the final state.
	bobAgrees := answer(bob, func(r map[string]any) bool { return r["kind"] == "close" && r["status"] == "pending" },
		"update_respond", respond("update_respond"))
	var closed channelView
	alice.ok("channel_close", map[string]any{"channelId": opened.ChannelID}, &closed)
	awaitAnswer(t, bobAgrees)
	require.Equal(t, "closed", closed.State)
	require.Equal(t, "agreement", closed.ClosedBy)
	require.Equal(t, eth(8).String(), closed.Balance["mine"])
	// A closed channel takes no more payments: wrong state. Closing it
	// again answers with how it closed.
	e := alice.fail("channel_send", map[string]any{"channelId": opened.ChannelID, "amount": "1"}, 1009)
	require.Equal(t, "closed", e["data"].(map[string]any)["state"])
	var again channelView
	alice.ok("channel_close", map[string]any{"channelId": opened.ChannelID}, &again)
	require.Equal(t, closed.State, again.State)
	require.Equal(t, closed.ClosedBy, again.ClosedBy)
	require.Equal(t, closed.Balance, again.Balance)

	var bobView channelView
	require.Eventually(t, func() bool {
		m := bob.call("channel_get", map[string]any{"channelId": opened.ChannelID})
		if m["error"] != nil {
			return false
		}
		r := m["result"].(map[string]any)
		if r["state"] != "closed" {
			return false
		}
		bob.ok("channel_get", map[string]any{"channelId": opened.ChannelID}, &bobView)
		return true
	}, time.Minute, 100*time.Millisecond)

	endA, endB := balance(t, alice), balance(t, bob)
	wantA := new(big.Int).Sub(startA, eth(10))
	wantA.Add(wantA, eth(8)).Sub(wantA, gasCost(t, f.chain, closed.TxHashes))
	wantB := new(big.Int).Sub(startB, eth(10))
	wantB.Add(wantB, eth(12)).Sub(wantB, gasCost(t, f.chain, bobView.TxHashes))
	require.Equal(t, wantA.String(), endA.String(), "alice on-chain")
	require.Equal(t, wantB.String(), endB.String(), "bob on-chain")
	require.NotEmpty(t, closed.TxHashes)
	require.NotEmpty(t, bobView.TxHashes)
}

// TestConcurrentBothDirections: alice and bob pay each other at the same
// time on one channel; both end on the same state and the close settles it.
func TestConcurrentBothDirections(t *testing.T) {
	f := newFixture(t, map[string]any{"channel.autoAcceptClose": true})
	alice := login(t, f, f.alice, "alice")
	bob := login(t, f, f.bob, "bob")
	ch := openChannel(t, alice, bob, eth(10), eth(10))

	const n = 40
	var sends []<-chan error
	for _, c := range []*client{alice, bob} {
		sends = append(sends, perundtest.Async(func() error {
			for i := 0; i < n; i++ {
				if _, err := c.TryCall("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "1000"}, time.Minute); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	for _, s := range sends {
		require.NoError(t, perundtest.Recv(t, s, 5*time.Minute, "the payments"))
	}
	var va, vb channelView
	// The receiver of the last update enables it right after answering.
	require.Eventually(t, func() bool {
		alice.ok("channel_get", map[string]any{"channelId": ch.ChannelID}, &va)
		bob.ok("channel_get", map[string]any{"channelId": ch.ChannelID}, &vb)
		return va.Version == 2*n && vb.Version == 2*n
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, va.Version, vb.Version)
	require.Equal(t, va.Balance["mine"], vb.Balance["theirs"])
	require.Equal(t, va.Balance["theirs"], vb.Balance["mine"])
	require.Equal(t, eth(10).String(), va.Balance["mine"], "equal payments cancel out")

	var closed channelView
	alice.ok("channel_close", map[string]any{"channelId": ch.ChannelID}, &closed)
	require.Equal(t, "closed", closed.State)
	require.Equal(t, "agreement", closed.ClosedBy)
}

// TestBadInput: every bad call gets a clear error and changes nothing.
func TestBadInput(t *testing.T) {
	f := newFixture(t, nil)
	anon := dial(t, f.url)
	anon.fail("channel_list", nil, 1001)
	anon.fail("session_open", map[string]any{"account": f.alice.Hex(), "password": "wrong"}, 1001)
	anon.fail("session_open", map[string]any{"account": "0x000000000000000000000000000000000000dEaD", "password": "x"}, 1002)
	anon.fail("session_resume", map[string]any{"sessionId": "0x00", "token": "nope"}, 1001)
	anon.fail("no_such_method", nil, -32601)

	alice := login(t, f, f.alice, "alice")
	bob := login(t, f, f.bob, "bob")
	ch := openChannel(t, alice, bob, eth(1), big.NewInt(0))

	tests := []struct {
		name   string
		method string
		params any
		code   int
		field  string
	}{
		{"wrong type", "channel_send", map[string]any{"channelId": ch.ChannelID, "amount": 5}, -32602, "amount"},
		{"negative amount", "channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "-5"}, -32602, "amount"},
		{"fractional amount", "channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "1.5"}, -32602, "amount"},
		{"non-numeric amount", "channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "ten"}, -32602, "amount"},
		{"zero amount", "channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "0"}, -32602, "amount"},
		{"missing amount", "channel_send", map[string]any{"channelId": ch.ChannelID}, -32602, "amount"},
		{"unknown field", "channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "1", "memo": "x"}, -32602, "memo"},
		{"bad channel id", "channel_get", map[string]any{"channelId": "0x12"}, -32602, "channelId"},
		{"unknown channel", "channel_get", map[string]any{"channelId": "0x" + string(make64('a'))}, 1002, ""},
		{"more than the channel holds", "channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(2).String()}, 1007, ""},
		{"request more than the peer holds", "channel_request", map[string]any{"channelId": ch.ChannelID, "amount": "1"}, 1007, ""},
		{"unknown peer", "channel_open", map[string]any{"peer": "carol", "balance": map[string]string{"mine": "1", "theirs": "0"}}, 1002, ""},
		{"more than on-chain", "channel_open", map[string]any{"peer": "bob", "balance": map[string]string{"mine": eth(1000).String(), "theirs": "0"}}, 1007, ""},
		{"challenge below the minimum", "channel_open", map[string]any{"peer": "bob", "challengeDuration": 5, "balance": map[string]string{"mine": "1", "theirs": "0"}}, -32602, "challengeDuration"},
		{"unknown asset", "channel_open", map[string]any{"peer": "bob", "asset": "DOGE", "balance": map[string]string{"mine": "1", "theirs": "0"}}, -32602, "asset"},
		{"unknown topic", "perun_subscribe", []string{"blocks"}, -32602, "topic"},
		{"unknown proposal", "proposal_respond", map[string]any{"proposalId": "0x" + string(make64('b')), "accept": true}, 1002, ""},
		{"unknown update", "update_respond", map[string]any{"updateId": "0x" + string(make64('c')), "accept": false}, 1002, ""},
		{"contact conflict", "contacts_add", map[string]any{"alias": "bob", "address": f.alice.Hex(), "commAddress": "127.0.0.1:1"}, -32602, "address"},
		{"contact bad host", "contacts_add", map[string]any{"alias": "carol", "address": "0x000000000000000000000000000000000000dEaD", "commAddress": "nowhere"}, -32602, "commAddress"},
		{"open channels block close", "session_close", nil, 1003, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := alice.fail(tc.method, tc.params, tc.code)
			if tc.field != "" {
				require.Equal(t, tc.field, e["data"].(map[string]any)["field"], e)
			}
		})
	}
	var after channelView
	alice.ok("channel_get", map[string]any{"channelId": ch.ChannelID}, &after)
	require.Equal(t, ch.Version, after.Version, "nothing changed")
	require.Equal(t, ch.Balance, after.Balance)

	// A peer that is not listening: 1004.
	alice.ok("contacts_add", map[string]any{"alias": "ghost", "address": "0x000000000000000000000000000000000000dEaD", "commAddress": "127.0.0.1:1"}, nil)
	alice.fail("channel_open", map[string]any{"peer": "ghost", "balance": map[string]string{"mine": "1", "theirs": "0"}}, 1004)

	// Alice's connection cannot see bob's proposals; a second connection of
	// bob's session can resume it and sees them.
	var opened node.SessionInfo
	dial(t, f.url).ok("session_open", map[string]any{"account": f.bob.Hex(), "password": "bob"}, &opened)
	bob2 := dial(t, f.url)
	bob2.ok("session_resume", map[string]any{"sessionId": opened.SessionID, "token": opened.Token}, nil)
	bob2.ok("perun_subscribe", []string{"proposals"}, nil)
	proposed := perundtest.Async(func() error {
		_, err := alice.TryCall("channel_open", map[string]any{"peer": "bob", "balance": map[string]string{"mine": "1", "theirs": "0"}}, time.Minute)
		return err
	})
	prop := bob2.note(func(r map[string]any) bool { return r["status"] == "pending" })
	var aliceSees, bobSees []map[string]any
	alice.ok("proposal_list", nil, &aliceSees)
	require.Empty(t, aliceSees, "alice does not see the proposal made to bob")
	bob2.ok("proposal_list", nil, &bobSees)
	require.Len(t, bobSees, 1)
	require.Equal(t, prop["proposalId"], bobSees[0]["proposalId"])
	bob2.ok("proposal_respond", map[string]any{"proposalId": prop["proposalId"], "accept": false, "reason": "test"}, nil)
	require.ErrorContains(t, perundtest.Recv(t, proposed, time.Minute, "alice's proposal"), "1005")
	var info node.SessionInfo
	bob2.ok("session_info", nil, &info)
	require.Equal(t, opened.SessionID, info.SessionID, "the resumed session is bob's")
	require.Empty(t, info.Token, "session_info does not repeat the token")
}

func make64(c byte) []byte {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return b
}

// openChannel opens a channel from a to b; b accepts. It returns once both
// sides hold the funded channel.
func openChannel(t *testing.T, a, b *client, mine, theirs *big.Int) channelView {
	t.Helper()
	var sub string
	b.ok("perun_subscribe", []string{"proposals"}, &sub)
	accepted := answer(b, func(r map[string]any) bool { return r["status"] == "pending" }, "proposal_respond", respond("proposal_respond"))
	var ch channelView
	a.ok("channel_open", map[string]any{"peer": "bob", "balance": map[string]string{"mine": mine.String(), "theirs": theirs.String()}}, &ch)
	theirView := awaitAnswer(t, accepted).result.(map[string]any)
	require.Equal(t, ch.ChannelID, theirView["channelId"])
	b.ok("perun_unsubscribe", []string{sub}, nil)
	return ch
}
