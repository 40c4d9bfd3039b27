package integration

import (
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRefutedWithoutTheUser: alice cheats by registering an old state in
// which she holds more, while bob is not there: he logged out with force,
// or his node restarted and he did not log in. Bob's node refutes with the
// latest state from its watchtower account, without bob; when bob logs in
// his channel shows the latest balance, his disputes subscription delivers
// what happened meanwhile and dispute_list lists it, and once the
// challenge period is over his node withdraws his latest share to the wei.
func TestRefutedWithoutTheUser(t *testing.T) {
	for _, tc := range []struct {
		name    string
		restart bool
	}{
		{"bob logged out with force", false},
		{"bob's node restarted, bob not logged in", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startAnvil(t)
			ethc := a.rpc(t)
			c := deploy(t, a)
			alice, bob, sa, sb, ch := pairWith(t, a, c)
			// alice pays bob 3 ETH: latest v3 is alice 7, bob 13.
			for i := 0; i < 3; i++ {
				sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(1).String()}, nil)
			}
			var v channelView
			require.Eventually(t, func() bool {
				sb.OK("channel_get", map[string]any{"channelId": ch.ChannelID}, &v)
				return v.Version == 3
			}, 10*time.Second, 10*time.Millisecond)
			if tc.restart {
				bob.stop(t)
				bob.start(t)
				require.Contains(t, bob.log.String(), `watchtower started" users=1 channels=1`, "bob's channel is watched before he logs in")
			} else {
				sb.OK("session_close", map[string]any{"force": true}, nil)
			}
			// alice's own node would refute her: she stops it and cheats.
			alice.kill()
			start := balanceOf(t, ethc, bob.addr)
			registerStaleBy(t, a, alice, keyAlice, c, ch.ChannelID, 1, [2]*big.Int{eth(9), eth(11)})
			require.Eventually(t, func() bool { return onChainVersion(t, a, c, ch.ChannelID) == 3 }, time.Minute, 100*time.Millisecond,
				"bob's node registered the latest version without bob")
			require.Equal(t, start.String(), balanceOf(t, ethc, bob.addr).String(), "bob paid no gas: the watchtower account did")

			sb = bob.login(t)
			sb.OK("channel_get", map[string]any{"channelId": ch.ChannelID}, &v)
			require.EqualValues(t, 3, v.Version)
			require.Equal(t, eth(13).String(), v.Balance["mine"])
			sb.OK("perun_subscribe", []string{"disputes"}, nil)
			stale := sb.Note(30*time.Second, func(r map[string]any) bool { return r["event"] == "registered" && r["version"] == float64(1) })
			require.Equal(t, true, stale["byPeer"])
			require.Equal(t, "refuted with version 3", stale["response"])
			require.True(t, strings.EqualFold(alice.addr.Hex(), stale["sender"].(string)))
			ref := sb.Note(30*time.Second, func(r map[string]any) bool { return r["event"] == "registered" && r["version"] == float64(3) })
			require.Equal(t, true, ref["byWatcher"])
			require.True(t, strings.EqualFold(bob.watcher.Hex(), ref["sender"].(string)))
			var log []map[string]any
			sb.OK("dispute_list", map[string]any{"channelId": ch.ChannelID}, &log)
			require.GreaterOrEqual(t, len(log), 2)
			require.EqualValues(t, 1, log[0]["version"])
			require.EqualValues(t, 3, log[1]["version"])

			closed := closedWhileTimePasses(t, a, ethc, sb, ch.ChannelID)
			require.Equal(t, eth(13).String(), closed.Balance["mine"])
			require.Equal(t, "dispute", closed.ClosedBy)
			want := new(big.Int).Add(start, eth(13))
			want.Sub(want, gasCost(t, ethc, closed.TxHashes[1:]))
			require.Equal(t, want.String(), balanceOf(t, ethc, bob.addr).String(), "bob gets every wei of the latest state")
		})
	}
}
