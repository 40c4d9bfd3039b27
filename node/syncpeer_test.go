package node_test

import (
	"context"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/client"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"

	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/node"
)

// errLogged counts the records with message msg whose err attribute
// contains want.
func (r *logRecorder) errLogged(msg, want string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.msg == msg && strings.Contains(rec.attrs["err"], want) {
			n++
		}
	}
	return n
}

// TestSyncNewerStateFromPeer: bob's node restarts with a channel at
// version 1 (alice 4 ETH, bob 6 ETH) and syncs it with alice, whose
// answer is crafted (a wire peer with alice's key at her address). A newer
// state replaces bob's only if it carries valid signatures of both: one
// whose signature of bob is forged, one signed by carol in bob's place and
// one with alice's signature alone, each giving alice 2 ETH of bob's, are
// not adopted (bob stays at version 1 with 6 ETH, the channel reported
// unsynced). A valid newer state (bob signed it and died before enabling
// it) is adopted, written to disk and kept when alice later answers with
// an older one; a valid newer final state is adopted as final, so the
// channel comes back Final and the node settles it by agreement: bob
// withdraws exactly his share of it.
func TestSyncNewerStateFromPeer(t *testing.T) {
	t.Parallel()
	keys := freshKeys(t, 3) // alice, bob, carol
	v, addrs := newEnv(t, keys...)
	bobAddr := addrs[1]
	dirB := t.TempDir()
	na := v.node(t, map[string]string{keys[0]: "alice"})
	nb := v.nodeIn(t, dirB, map[string]string{keys[1]: "bob"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, err := na.OpenSession(ctx, addrs[0], "alice", false)
	require.NoError(t, err)
	bob, err := nb.OpenSession(ctx, bobAddr, "bob", false)
	require.NoError(t, err)
	introduce(t, alice, bob)
	ci := openAcceptedWith(ctx, t, alice, bob, eth(5), eth(5), 10)
	_, err = alice.Send(ctx, ci.ChannelID, eth(1))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		c, err := bob.Channel(ci.ChannelID)
		return err == nil && c.Version == 1
	}, 10*time.Second, 5*time.Millisecond)
	params, latest, err := alice.ChannelStateForTest(ci.ChannelID)
	require.NoError(t, err)
	aliceAt := na.PeerListenAddr().String()
	require.NoError(t, na.Close(ctx))
	require.NoError(t, nb.Close(ctx))

	k := perundtest.Keys(t, keys...)
	// state is version ver of the channel with alice holding aliceGets.
	state := func(ver uint64, aliceGets *big.Int, final bool) *channel.State {
		st := latest.Clone()
		st.Version = ver
		st.Balances[0][0] = new(big.Int).Set(aliceGets)
		st.Balances[0][1] = new(big.Int).Sub(eth(10), aliceGets)
		st.IsFinal = final
		return st
	}
	cheat := state(2, eth(6), false)
	forged := perundtest.SignAll(t, cheat, k[0], k[1])
	forged.Sigs[1] = append(wallet.Sig(nil), forged.Sigs[1]...)
	forged.Sigs[1][10] ^= 0xff
	byCarol := perundtest.SignAll(t, cheat, k[0], k[2])
	aliceOnly := perundtest.SignAll(t, cheat, k[0], k[1])
	aliceOnly.Sigs = aliceOnly.Sigs[:1]
	newer := perundtest.SignAll(t, state(2, eth(3), false), k[0], k[1])
	older := perundtest.SignAll(t, latest.Clone(), k[0], k[1])
	final := perundtest.SignAll(t, state(3, eth(3), true), k[0], k[1])

	mallory := perundtest.NewMallory(t, k[0], aliceAt)
	tests := []struct {
		name   string
		answer channel.Transaction
		// adopted: bob's channel takes the answer's version and balances;
		// otherwise it stays at was, reported unsynced, and the node logs
		// why (refused).
		adopted bool
		was     uint64
		refused string
		// settles: the answer is final and bob's node closes the channel.
		settles bool
	}{
		{name: "bob's signature forged", answer: forged, was: 1, refused: "signature 1 invalid"},
		{name: "signed by carol in bob's place", answer: byCarol, was: 1, refused: "signature 1 invalid"},
		{name: "alice's signature alone", answer: aliceOnly, was: 1, refused: "signatures missing"},
		{name: "valid newer state", answer: newer, adopted: true},
		{name: "older state: bob keeps his newer one", answer: older, was: 2},
		{name: "valid newer final state", answer: final, adopted: true, settles: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, lg := newLogRecorder()
			nb := v.nodeWith(t, dirB, map[string]string{keys[1]: "bob"}, testNode{log: lg})
			onChain, err := v.chain.BalanceAt(ctx, bobAddr, nil)
			require.NoError(t, err)
			from, err := v.chain.BlockNumber(ctx)
			require.NoError(t, err)
			type opened struct {
				s   *node.Session
				err error
			}
			res := make(chan opened, 1)
			go func() {
				s, err := nb.OpenSession(ctx, bobAddr, "bob", false)
				res <- opened{s, err}
			}()
			// Bob's node sends its state; mallory answers with the case's.
			sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
			defer scancel()
			e, err := mallory.Next(sctx, func(e *wire.Envelope) bool {
				_, ok := e.Msg.(*client.ChannelSyncMsg)
				return ok
			})
			require.NoError(t, err, "bob's node syncs with alice")
			asked := e.Msg.(*client.ChannelSyncMsg)
			require.Equal(t, params.ID(), asked.ID())
			require.NoError(t, mallory.Send(sctx, bobAddr, &client.ChannelSyncMsg{Phase: channel.Acting, CurrentTX: tc.answer}))
			var o opened
			select {
			case o = <-res:
			case <-time.After(30 * time.Second):
				t.Fatal("bob's session did not open")
			}
			require.NoError(t, o.err)
			bob := o.s
			got, err := bob.Channel(ci.ChannelID)
			require.NoError(t, err)
			if !tc.adopted {
				require.Equal(t, tc.was, asked.CurrentTX.Version, "bob's node sent its own state")
				require.Equal(t, tc.was, got.Version, "the peer's state is not adopted")
				want := older // bob's version 1
				if tc.was == 2 {
					want = newer
				}
				require.Equal(t, want.State.Balances[0][1].String(), got.Balance.Mine)
				require.Equal(t, node.StateOpen, got.State)
				if tc.refused != "" {
					require.True(t, got.Unsynced, "the channel is reported unsynced")
					require.Equal(t, 1, rec.errLogged("channel not synced with peer", tc.refused))
				} else {
					require.False(t, got.Unsynced)
					require.Equal(t, 1, rec.count("peer is behind on a channel"))
				}
				return
			}
			mine := tc.answer.State.Balances[0][1]
			require.Equal(t, 1, rec.count("channel synced with peer", "channel", ci.ChannelID))
			require.False(t, got.Unsynced)
			if !tc.settles {
				require.Equal(t, tc.answer.State.Version, got.Version)
				require.Equal(t, mine.String(), got.Balance.Mine)
				require.Equal(t, node.StateOpen, got.State)
				return
			}
			// Restored Final: the node concludes the final state and
			// withdraws bob's share without being asked.
			require.Eventually(t, func() bool {
				got, err = bob.Channel(ci.ChannelID)
				return err == nil && got.State == node.StateClosed
			}, time.Minute, 50*time.Millisecond, "the restored final channel is settled")
			require.Equal(t, "agreement", got.ClosedBy)
			require.Equal(t, tc.answer.State.Version, got.Version)
			require.Equal(t, mine.String(), got.Balance.Mine)
			v.requireWithdrew(t, bobAddr, onChain, mine, from+1, "bob withdrew his share of the final state to the wei")
			disputes, err := bob.Disputes("")
			require.NoError(t, err)
			require.Empty(t, disputes, "an agreed close is no dispute")
		})
	}
}
