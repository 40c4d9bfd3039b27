package integration

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/internal/perundtest"
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
	rng := rand.New(rand.NewSource(seedOf(t)))
	kills := 25 // 20 SIGKILLs and 5 SIGTERMs
	if s := os.Getenv("IT_KILLS"); s != "" {
		var err error
		kills, err = strconv.Atoi(s)
		require.NoError(t, err, "IT_KILLS")
	}
	a := startAnvil(t)
	ethc := a.rpc(t)
	c := deploy(t, a)
	alice := newProc(t, "alice", keyAlice, a, c, extra...)
	bob := newProc(t, "bob", keyBob, a, c)
	sa, sb := alice.login(t), bob.login(t)
	ch := openBetween(t, sa, alice.addr, sb, bob.addr, "bob")
	const amount = 1000
	total := 0
	for i := 0; i < kills; i++ {
		sent := make(chan int, 1)
		lastErr := make(chan map[string]any, 1)
		go func(s *session) {
			n, e := stream(s, ch.ChannelID, amount)
			lastErr <- e
			sent <- n
		}(sa)
		time.Sleep(time.Duration(rng.Intn(300)) * time.Millisecond)
		graceful := i%5 == 4
		if graceful {
			alice.stop(t) // SIGTERM: calls in flight are answered, exit 0
		} else {
			alice.kill()
		}
		total += perundtest.Recv(t, sent, time.Minute, "the stream ends with the stop")
		if e := perundtest.Recv(t, lastErr, time.Minute, "the stream's last answer"); graceful {
			require.Contains(t, []float64{rpctest.CodeConnectionClosed, 1006}, e["code"], "stop %d: %v", i+1, e)
		}

		alice.start(t)
		sa = alice.login(t)
		av, bv := agreed(t, sa, sb, ch.ChannelID, fmt.Sprintf("kill %d", i+1))
		require.Equal(t, "open", av.State, "kill %d", i+1)
		require.Equal(t, mineAfter(av.Version, amount), av.Balance["mine"], "kill %d", i+1)
		require.Equal(t, mineAfter(av.Version, amount), bv.Balance["theirs"], "kill %d", i+1)
		require.GreaterOrEqual(t, av.Version, uint64(total), "kill %d: every answered payment survives", i+1)
		t.Logf("stop %d after %d answered payments: restored at version %d", i+1, total, av.Version)
	}

	// Payments go on in both directions, then a cooperative close.
	var v channelView
	sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "1"}, &v)
	sb.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "1"}, nil)
	// alice paid v.Version-1 payments of amount, then 1 wei; bob paid her
	// 1 wei back.
	closeExact(t, ethc, sa, sb, alice, ch.ChannelID, mineAfter(v.Version-1, amount))
}
