package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
)

// TestRestoreMidSettle: alice's node dies while it settles a channel with
// a bare go-perun client (which never settles by itself, so nothing but
// alice's node can finish the channel), and comes back from its data dir.
// The chain refuses alice's transactions from a chosen moment, so the
// settle stops where the case wants and go-perun's database holds the
// channel in phase Withdrawing: after an agreed close (the final state
// signed by both, its conclusion refused) or after a dispute (registered,
// the challenge period over, the conclusion refused). Restored on a
// working chain, the channel is settled without being asked: closed by
// agreement or by dispute as it was, alice's share withdrawn to the wei.
// (Registered is TestShutdownDuringSettle's; Final is
// TestSyncNewerStateFromPeer's valid newer final state.)
func TestRestoreMidSettle(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// dispute: alice force-closes; otherwise she closes cooperatively.
		dispute bool
		by      string
	}{
		{"withdrawing after an agreed close", false, "agreement"},
		{"withdrawing after a dispute", true, "dispute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			keys := freshKeys(t, 2) // alice, the bare client
			v, addrs := newEnv(t, keys...)
			aliceAddr := addrs[0]
			flaky := &flakyChain{Backend: v.chain}
			dirA := t.TempDir()
			users := map[string]string{keys[0]: "alice"}
			legacy := map[string]any{"comm.legacyPeers": addrs[1].Hex()}
			rec, lg := newLogRecorder()
			na := v.nodeWith(t, dirA, users, testNode{log: lg, chain: flaky, flags: legacy})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			alice, err := na.OpenSession(ctx, aliceAddr, "alice", false)
			require.NoError(t, err)
			bare := newBareClient(t, v, perundtest.Keys(t, keys[1])[0])
			bare.register(aliceAddr, alice.CommAddress())
			_, ci := openWithBare(ctx, t, bare, alice, eth(5), eth(5), 10)
			_, err = alice.Send(ctx, ci.ChannelID, eth(1))
			require.NoError(t, err)
			disputes, err := alice.Hub().Subscribe(subscriptions.Disputes)
			require.NoError(t, err)

			if tc.dispute {
				res := forceCloseRegistered(ctx, t, alice, disputes, ci.ChannelID)
				flaky.down.Store(true)
				// go-perun's settle waits out the challenge period, enters
				// Withdrawing and fails to conclude.
				require.Eventually(t, func() bool { return rec.count("settle channel") > 0 }, time.Minute, 50*time.Millisecond,
					"the conclusion after the challenge period is refused")
				require.NoError(t, na.Close(ctx))
				require.Error(t, perundtest.Recv(t, res, time.Minute, "the force close returns"), "the force close was interrupted")
			} else {
				flaky.down.Store(true)
				_, err = alice.Close(ctx, ci.ChannelID)
				var ce *node.ChainError
				require.ErrorAs(t, err, &ce, "the final state is signed, its conclusion refused")
				require.NoError(t, na.Close(ctx))
			}

			onChain, err := v.chain.BalanceAt(ctx, aliceAddr, nil)
			require.NoError(t, err)
			from, err := v.chain.BlockNumber(ctx)
			require.NoError(t, err)
			na = v.nodeWith(t, dirA, users, testNode{flags: legacy})
			alice, err = na.OpenSession(ctx, aliceAddr, "alice", false)
			require.NoError(t, err)
			var got node.ChannelInfo
			require.Eventually(t, func() bool {
				got, err = alice.Channel(ci.ChannelID)
				return err == nil && got.State == node.StateClosed
			}, time.Minute, 50*time.Millisecond, "the restored channel is settled")
			require.Equal(t, tc.by, got.ClosedBy)
			mine := eth(4)
			require.Equal(t, mine.String(), got.Balance.Mine)
			require.Equal(t, eth(6).String(), got.Balance.Theirs)
			v.requireWithdrew(t, aliceAddr, onChain, mine, from+1, "alice withdrew her share to the wei")
			log, err := alice.Disputes(ci.ChannelID)
			require.NoError(t, err)
			if !tc.dispute {
				require.Empty(t, log, "an agreed close is no dispute")
				return
			}
			require.NotEmpty(t, log)
			require.Equal(t, node.DisputeWithdrawn, log[len(log)-1].Event)
		})
	}
}
