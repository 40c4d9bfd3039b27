package integration

import (
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
				require.True(t, strings.EqualFold(alice.addr.Hex(), stale["sender"].(string)))
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
			want := new(big.Int).Add(start, eth(13))
			want.Sub(want, gasCost(t, ethc, closed.TxHashes[1:]))
			require.Equal(t, want.String(), balanceOf(t, ethc, bob.addr).String(), "bob gets every wei of the latest state")
		})
	}
}
