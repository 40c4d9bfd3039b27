package integration

import (
	"context"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"
)

// TestRefutedWithoutTheUser: alice cheats by registering an old state in
// which she holds more, while her peers are not there: bob logged out with
// force, or bob's node (which also holds carol, in that case) restarted
// and nobody logged in. Their node refutes with the latest states from its
// watchtower account, without them; the restarted node watches both users'
// channels before anyone logs in. When they log in their channels show the
// latest balances, their disputes subscription delivers what happened
// meanwhile and dispute_list lists it, and once the challenge period is
// over bob's node withdraws his latest share to the wei.
func TestRefutedWithoutTheUser(t *testing.T) {
	for _, tc := range []struct {
		name    string
		restart bool
	}{
		{"bob logged out with force", false},
		{"bob's node restarted with bob and carol, nobody logged in", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startAnvil(t)
			ethc := a.rpc(t)
			c := deploy(t, a)
			alice, bob, sa, sb, ch := pairWith(t, a, c)
			type victim struct {
				addr common.Address
				key  string
				pw   string
				s    *session
				ch   channelView
			}
			victims := []*victim{{addr: bob.addr, key: keyBob, pw: bob.pw, s: sb, ch: ch}}
			if tc.restart {
				carol := bob.importKey(t, "carol", keyCarol, "carol")
				ck, _ := crypto.HexToECDSA(keyCarol)
				require.Equal(t, crypto.PubkeyToAddress(ck.PublicKey), carol)
				scarol := bob.loginAs(t, carol, "carol")
				victims = append(victims, &victim{addr: carol, key: keyCarol, pw: "carol", s: scarol,
					ch: openBetween(t, sa, alice.addr, scarol, carol, "carol")})
			}
			// alice pays each peer 3 ETH: latest v3 is alice 7, peer 13.
			for _, v := range victims {
				for i := 0; i < 3; i++ {
					sa.OK("channel_send", map[string]any{"channelId": v.ch.ChannelID, "amount": eth(1).String()}, nil)
				}
				var view channelView
				require.Eventually(t, func() bool {
					v.s.OK("channel_get", map[string]any{"channelId": v.ch.ChannelID}, &view)
					return view.Version == 3
				}, 10*time.Second, 10*time.Millisecond)
			}
			if tc.restart {
				bob.stop(t)
				bob.start(t)
				require.Contains(t, bob.log.String(), `watchtower started" users=2 channels=2`,
					"both users' channels are watched before anyone logs in")
			} else {
				sb.OK("session_close", map[string]any{"force": true}, nil)
			}
			// alice's own node would refute her: she stops it and cheats.
			alice.kill()
			start := balanceOf(t, ethc, bob.addr)
			for _, v := range victims {
				registerStaleBy(t, a, alice, keyAlice, v.key, c, v.ch.ChannelID, 1, [2]*big.Int{eth(9), eth(11)})
			}
			for _, v := range victims {
				require.Eventually(t, func() bool { return onChainVersion(t, a, c, v.ch.ChannelID) == 3 }, time.Minute, 100*time.Millisecond,
					"the peer's node registered the latest version without the peer")
			}
			require.Equal(t, start.String(), balanceOf(t, ethc, bob.addr).String(), "bob paid no gas: the watchtower account did")

			for _, v := range victims {
				v.s = bob.loginAs(t, v.addr, v.pw)
				var view channelView
				v.s.OK("channel_get", map[string]any{"channelId": v.ch.ChannelID}, &view)
				require.EqualValues(t, 3, view.Version)
				require.Equal(t, eth(13).String(), view.Balance["mine"])
				v.s.OK("perun_subscribe", []string{"disputes"}, nil)
				stale := v.s.Note(30*time.Second, func(r map[string]any) bool { return r["event"] == "registered" && r["version"] == float64(1) })
				require.Equal(t, true, stale["byPeer"])
				require.Equal(t, "refuting with version 3", stale["response"])
				require.Equal(t, "sending", stale["refutation"])
				// After bob's node restarts, its check of the adjudicator may
				// find the stale registration before the event replay: such
				// an event has no transaction, so no sender (docs/api-notes).
				if stale["txHash"] != nil {
					require.True(t, strings.EqualFold(alice.addr.Hex(), stale["sender"].(string)))
				}
				ref := v.s.Note(30*time.Second, func(r map[string]any) bool { return r["event"] == "registered" && r["version"] == float64(3) })
				require.Equal(t, true, ref["byWatcher"])
				require.Equal(t, "mined", ref["refutation"])
				require.True(t, strings.EqualFold(bob.watcher.Hex(), ref["sender"].(string)))
				var log []map[string]any
				v.s.OK("dispute_list", map[string]any{"channelId": v.ch.ChannelID}, &log)
				require.GreaterOrEqual(t, len(log), 2)
				require.EqualValues(t, 1, log[0]["version"])
				require.EqualValues(t, 3, log[1]["version"])
			}

			closed := closedWhileTimePasses(t, a, ethc, victims[0].s, ch.ChannelID)
			require.Equal(t, eth(13).String(), closed.Balance["mine"])
			require.Equal(t, "dispute", closed.ClosedBy)
			// The whole story, in order: registered (stale) → refutation
			// sent → refutation mined → concluded → withdrawn.
			var story []map[string]any
			victims[0].s.OK("dispute_list", map[string]any{"channelId": ch.ChannelID}, &story)
			var kinds []string
			for _, ev := range story {
				kind := ev["event"].(string)
				if r, ok := ev["refutation"].(string); ok {
					kind += "/" + r
				}
				kinds = append(kinds, kind)
			}
			require.Equal(t, []string{"registered/sending", "registered/mined", "concluded", "withdrawn"}, kinds)
			require.Equal(t, eth(13).String(), story[3]["amount"])
			require.Equal(t, closed.TxHashes[len(closed.TxHashes)-1], story[3]["txHash"])
			want := new(big.Int).Add(start, eth(13))
			want.Sub(want, gasCost(t, ethc, closed.TxHashes[1:]))
			require.Equal(t, want.String(), balanceOf(t, ethc, bob.addr).String(), "bob gets every wei of the latest state")
		})
	}
}

// TestLostDispute is issue 18's lost dispute on anvil: bob's node is down
// for the whole challenge period of an old state that alice registers
// (version 1, in which she holds 2 ETH more than in the latest, version
// 3); she concludes it and withdraws. When bob's node is back and bob
// logs in, his node sends no registration or conclusion that could only
// revert: it withdraws bob's version-1 share exactly, in one transaction,
// shows the channel closed by dispute at version 1 beside the latest
// state, and channel_close answers at once with that.
func TestLostDispute(t *testing.T) {
	a := startAnvil(t)
	ethc := a.rpc(t)
	c := deploy(t, a)
	alice, bob, sa, sb, ch := pairWith(t, a, c)
	for i := 0; i < 3; i++ {
		sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(1).String()}, nil)
	}
	var view channelView
	require.Eventually(t, func() bool {
		sb.OK("channel_get", map[string]any{"channelId": ch.ChannelID}, &view)
		return view.Version == 3
	}, 10*time.Second, 10*time.Millisecond)
	bob.stop(t)
	alice.kill()
	req := registerStaleBy(t, a, alice, keyAlice, keyBob, c, ch.ChannelID, 1, [2]*big.Int{eth(9), eth(11)})
	a.passTime(t, ethc, challenge+1)
	concludeStaleBy(t, a, c, keyAlice, 0, req)

	start := balanceOf(t, ethc, bob.addr)
	from := blockNumber(t, ethc) + 1
	bob.start(t)
	sb = bob.login(t)
	began := time.Now()
	var closed channelView
	sb.OK("channel_close", map[string]any{"channelId": ch.ChannelID}, &closed)
	t.Logf("channel_close answered after %v", time.Since(began))
	require.Equal(t, "closed", closed.State)
	require.Equal(t, "dispute", closed.ClosedBy)
	require.EqualValues(t, 1, closed.Version)
	require.Equal(t, eth(11).String(), closed.Balance["mine"])
	require.EqualValues(t, 3, closed.LatestVersion)
	require.Equal(t, eth(13).String(), closed.LatestBalance["mine"])
	require.Equal(t, new(big.Int).Neg(eth(2)).String(), closed.Difference)

	require.Empty(t, failedSince(t, ethc, from), "no transaction reverted")
	withdrawal := closed.TxHashes[len(closed.TxHashes)-1]
	want := new(big.Int).Add(start, eth(11))
	want.Sub(want, gasCost(t, ethc, []string{withdrawal}))
	require.Equal(t, want.String(), balanceOf(t, ethc, bob.addr).String(), "bob gets every wei of his version-1 share, in one transaction")

	var log []map[string]any
	sb.OK("dispute_list", map[string]any{"channelId": ch.ChannelID}, &log)
	last := log[len(log)-1]
	require.Equal(t, "withdrawn", last["event"])
	require.Equal(t, eth(11).String(), last["amount"])
	require.Equal(t, withdrawal, last["txHash"])
}

// TestOldRegistrationRefutedAtStart (issue 18.3): alice registers an old
// state while bob's node is down, and more than the event look-back (100
// blocks) passes before it starts again, still within the challenge
// period. Bob's node reads the adjudicator at start, before anyone logs
// in, and refutes.
func TestOldRegistrationRefutedAtStart(t *testing.T) {
	a := startAnvil(t)
	ethc := a.rpc(t)
	c := deploy(t, a)
	alice := newProc(t, "alice", keyAlice, a, c)
	bob := newProc(t, "bob", keyBob, a, c)
	sa, sb := alice.login(t), bob.login(t)
	ch := openBetweenWith(t, sa, alice.addr, sb, bob.addr, "bob", 600)
	for i := 0; i < 3; i++ {
		sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(1).String()}, nil)
	}
	var view channelView
	require.Eventually(t, func() bool {
		sb.OK("channel_get", map[string]any{"channelId": ch.ChannelID}, &view)
		return view.Version == 3
	}, 10*time.Second, 10*time.Millisecond)
	bob.stop(t)
	alice.kill()
	registerStaleBy(t, a, alice, keyAlice, keyBob, c, ch.ChannelID, 1, [2]*big.Int{eth(9), eth(11)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out any
	require.NoError(t, ethc.CallContext(ctx, &out, "anvil_mine", 150, 1)) // 150 blocks, 150 s: within the 600 s
	bob.start(t)
	require.Eventually(t, func() bool { return onChainVersion(t, a, c, ch.ChannelID) == 3 }, time.Minute, 100*time.Millisecond,
		"bob's node refuted a registration older than its event look-back, before bob logged in")
}
