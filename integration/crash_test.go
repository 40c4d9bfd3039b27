package integration

import (
	"math/big"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/rpc/rpctest"
)

// TestCrashLoop: alice's perund is killed with SIGKILL at random moments
// of a stream of payments (IT_KILLS stops, 25 by default; every fifth
// stop is a SIGTERM instead, which must exit 0: 20 kills and 5 terms) and started again
// from its data dir. Each time the channel comes back at the version bob
// has, with the balances that version says, and payments go on; at the end
// a cooperative close pays alice exactly her share. The random delays come
// from a seed printed on failure (IT_SEED repeats a run). It runs with
// alice's channel store in LevelDB (the data dir) and in PostgreSQL
// (store.url: a database of the test's PostgreSQL cluster, which outlives
// her process).
func TestCrashLoop(t *testing.T) {
	for _, backend := range []string{"leveldb", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			var extra []string
			if backend == "postgres" {
				extra = append(extra, "--set=store.url="+pg.Database(t))
			}
			crashLoop(t, extra...)
		})
	}
}

// crashLoop is TestCrashLoop with alice's node configured by extra (as
// newProc takes it).
func crashLoop(t *testing.T, extra ...string) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("IT_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, "IT_SEED")
	}
	kills := 25 // 20 SIGKILLs and 5 SIGTERMs
	if s := os.Getenv("IT_KILLS"); s != "" {
		var err error
		kills, err = strconv.Atoi(s)
		require.NoError(t, err, "IT_KILLS")
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("crash loop failed with seed %d: repeat with IT_SEED=%d go test ./integration -run %s", seed, seed, t.Name())
		}
	})
	rng := rand.New(rand.NewSource(seed))
	a := startAnvil(t)
	ethc := a.rpc(t)
	c := deploy(t, a)
	alice := newProc(t, "alice", keyAlice, a, c, extra...)
	bob := newProc(t, "bob", keyBob, a, c)
	sa, sb := alice.login(t), bob.login(t)
	ch := openBetween(t, sa, alice.addr, sb, bob.addr, "bob")
	const amount = 1000
	id := map[string]any{"channelId": ch.ChannelID}
	wantMine := func(version uint64) string {
		return new(big.Int).Sub(eth(10), new(big.Int).SetUint64(version*amount)).String()
	}
	total := 0
	for i := 0; i < kills; i++ {
		sent := make(chan int, 1)
		lastErr := make(chan map[string]any, 1)
		go func(s *session) {
			n := 0
			for {
				r := s.Call("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": strconv.Itoa(amount)})
				if r["error"] != nil {
					lastErr <- r["error"].(map[string]any)
					break
				}
				n++
			}
			sent <- n
		}(sa)
		time.Sleep(time.Duration(rng.Intn(300)) * time.Millisecond)
		graceful := i%5 == 4
		if graceful {
			alice.stop(t) // SIGTERM: calls in flight are answered, exit 0
		} else {
			alice.kill()
		}
		total += <-sent
		if e := <-lastErr; graceful {
			require.Contains(t, []float64{rpctest.CodeConnectionClosed, 1006}, e["code"], "stop %d: %v", i+1, e)
		}

		alice.start(t)
		sa = alice.login(t)
		var av, bv channelView
		require.Eventually(t, func() bool {
			sa.OK("channel_get", id, &av)
			sb.OK("channel_get", id, &bv)
			return av.Version == bv.Version
		}, 30*time.Second, 20*time.Millisecond, "kill %d: alice at %d, bob at %d", i+1, av.Version, bv.Version)
		require.Equal(t, "open", av.State, "kill %d", i+1)
		require.Equal(t, wantMine(av.Version), av.Balance["mine"], "kill %d", i+1)
		require.Equal(t, wantMine(av.Version), bv.Balance["theirs"], "kill %d", i+1)
		require.GreaterOrEqual(t, av.Version, uint64(total), "kill %d: every answered payment survives", i+1)
		t.Logf("stop %d after %d answered payments: restored at version %d", i+1, total, av.Version)
	}

	// Payments go on in both directions, then a cooperative close.
	var v channelView
	sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "1"}, &v)
	sb.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "1"}, nil)
	mine := new(big.Int).Sub(eth(10), new(big.Int).SetUint64((v.Version-1)*amount))
	sb.OK("perun_subscribe", []string{"updates"}, nil)
	accepted := acceptAsync(t, sb, func(r map[string]any) bool { return r["kind"] == "close" && r["status"] == "pending" })
	defer accepted()
	var before, closed channelView
	sa.OK("channel_get", id, &before)
	start := balanceOf(t, ethc, alice.addr)
	sa.OK("channel_close", id, &closed)
	require.Equal(t, "closed", closed.State)
	require.Equal(t, mine.String(), closed.Balance["mine"])
	var closeTxs []string
	for _, h := range closed.TxHashes {
		if !slices.Contains(before.TxHashes, h) {
			closeTxs = append(closeTxs, h)
		}
	}
	want := new(big.Int).Add(start, mine)
	want.Sub(want, gasCost(t, ethc, closeTxs))
	require.Equal(t, want.String(), balanceOf(t, ethc, alice.addr).String())
}
