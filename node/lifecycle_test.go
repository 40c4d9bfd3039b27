package node_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/core/types"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/node"
	"github.com/perund/perund/perunlog"
	"github.com/perund/perund/subscriptions"
)

// logRecorder is a slog handler that keeps every record (any level).
type logRecorder struct {
	mu   sync.Mutex
	recs []logRecord
}

type logRecord struct {
	msg   string
	attrs map[string]string
}

func newLogRecorder() (*logRecorder, *slog.Logger) {
	r := &logRecorder{}
	return r, slog.New(r)
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	lr := logRecord{msg: rec.Message, attrs: map[string]string{}}
	rec.Attrs(func(a slog.Attr) bool {
		lr.attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, lr)
	r.mu.Unlock()
	return nil
}

// The node logs without With or groups; their attributes would be dropped.
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// count counts the records with message msg and the attributes kv (key,
// value, key, value...).
func (r *logRecorder) count(msg string, kv ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
next:
	for _, rec := range r.recs {
		if rec.msg != msg {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if rec.attrs[kv[i]] != kv[i+1] {
				continue next
			}
		}
		n++
	}
	return n
}

func (r *logRecorder) reset() {
	r.mu.Lock()
	r.recs = nil
	r.mu.Unlock()
}

// goroutinesIn counts the goroutines that have a frame of the function fn
// (its full name) on their stack.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "\n"+fn+"(") {
			count++
		}
	}
	return count
}

const settleFunc = "github.com/perund/perund/node.(*channelEntry).settle"

// TestRestartSameNode: alice and bob are users of one node and share a
// channel. After a restart their sessions come back one after the other (as
// users log in over the API) and then together (as perund dev brings its
// demo users back). No sync dials a peer whose session is not up: one after
// the other, alice leaves the sync to bob, who syncs when he opens;
// together, both sync with each other without a retried send (the session
// with the higher address answers on the connection the other dialled).
// Payments go on both ways.
func TestRestartSameNode(t *testing.T) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	dir := t.TempDir()
	users := map[string]string{keyAlice: "alice", keyBob: "bob"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := v.nodeIn(t, dir, users)
	alice, bob := loginPair(t, n, n, addrs)
	ci := openAccepted(ctx, t, alice, bob, eth(5), eth(5))
	p := paySeq{id: ci.ChannelID, amt: big.NewInt(7)}
	p.pay(ctx, t, alice)
	p.pay(ctx, t, bob)
	require.NoError(t, n.Close(ctx))
	a, b := addrs[0].Hex(), addrs[1].Hex()

	t.Run("one after the other", func(t *testing.T) {
		rec, lg := newLogRecorder()
		n := v.nodeWith(t, dir, users, testNode{log: lg})
		alice, err := n.OpenSession(ctx, addrs[0], "alice", false)
		require.NoError(t, err)
		bob, err := n.OpenSession(ctx, addrs[1], "bob", false)
		require.NoError(t, err)
		require.Zero(t, rec.count("dial to peer failed"), "no sync dials a peer that is not up")
		require.Zero(t, rec.count("channel not synced with peer"))
		require.Equal(t, 1, rec.count("channel sync left to the peer", "session", a, "channel", ci.ChannelID))
		require.Equal(t, 1, rec.count("channel synced with peer", "session", b, "channel", ci.ChannelID))
		p.pay(ctx, t, alice)
		p.pay(ctx, t, bob)
		require.NoError(t, n.Close(ctx))
	})

	t.Run("together", func(t *testing.T) {
		rec, lg := newLogRecorder()
		// go-perun's own log shows whether a send was retried; it is put
		// back after the node closed (cleanups run last in, first out).
		perunRec, perunLog := newLogRecorder()
		perunlog.Install(perunLog)
		t.Cleanup(func() { perunlog.Install(slog.New(slog.NewTextHandler(io.Discard, nil))) })
		n := v.nodeWith(t, dir, users, testNode{log: lg})
		list, err := n.OpenSessions(ctx, []node.Login{{Account: addrs[0], Password: "alice"}, {Account: addrs[1], Password: "bob"}})
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.Equal(t, addrs[0], list[0].Address())
		require.Equal(t, addrs[1], list[1].Address())
		require.Zero(t, rec.count("dial to peer failed"), "no sync dials a peer that is not up")
		require.Zero(t, rec.count("channel not synced with peer"))
		require.Zero(t, rec.count("channel sync left to the peer"))
		require.Equal(t, 1, rec.count("channel synced with peer", "session", a, "channel", ci.ChannelID))
		require.Equal(t, 1, rec.count("channel synced with peer", "session", b, "channel", ci.ChannelID))
		require.Zero(t, perunRec.count("Publishing failed."), "no sync message was sent twice")
		p.pay(ctx, t, list[0])
		p.pay(ctx, t, list[1])
		again, err := n.OpenSession(ctx, addrs[0], "alice", false)
		require.NoError(t, err)
		require.Equal(t, list[0].ID(), again.ID(), "an open session is attached to")
	})
}

// TestShutdownDuringSettle: a node that closes while a force close waits
// out the challenge period cancels the settle and waits for it, so no
// settle runs on once Close has returned, and the force close returns an
// error. After the restart the settle resumes by itself and the channel
// closes by dispute (bob is offline throughout).
func TestShutdownDuringSettle(t *testing.T) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	dirA := t.TempDir()
	na := v.nodeIn(t, dirA, map[string]string{keyAlice: "alice"})
	nb := v.node(t, map[string]string{keyBob: "bob"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	alice, bob := loginPair(t, na, nb, addrs)
	ci := openAcceptedWith(ctx, t, alice, bob, eth(5), eth(5), 10)
	_, err := alice.Send(ctx, ci.ChannelID, eth(1))
	require.NoError(t, err)
	// Bob goes: only alice settles in this process (her share is checked).
	require.NoError(t, nb.Close(ctx))

	disputes, err := alice.Hub().Subscribe(subscriptions.Disputes)
	require.NoError(t, err)
	res := forceCloseRegistered(ctx, t, alice, disputes, ci.ChannelID)
	require.Equal(t, 1, goroutinesIn(settleFunc), "the settle waits out the challenge period")
	require.NoError(t, na.Close(ctx))
	require.Zero(t, goroutinesIn(settleFunc), "no settle runs on once the node is closed")
	require.Error(t, perundtest.Recv(t, res, time.Minute, "the force close returns"), "the force close was interrupted")

	na2 := v.nodeIn(t, dirA, map[string]string{keyAlice: "alice"})
	alice2, err := na2.OpenSession(ctx, addrs[0], "alice", false)
	require.NoError(t, err)
	var got node.ChannelInfo
	require.Eventually(t, func() bool {
		got, err = alice2.Channel(ci.ChannelID)
		return err == nil && got.State == node.StateClosed
	}, 2*time.Minute, 50*time.Millisecond, "the settle resumes after the restart")
	require.Equal(t, "dispute", got.ClosedBy)
	require.Equal(t, eth(4).String(), got.Balance.Mine)
}

// forceCloseRegistered starts s's force close of channel id and waits
// until disputes, s's subscription, tells that the channel is registered;
// the force close's error comes on the returned channel when it returns.
func forceCloseRegistered(ctx context.Context, t *testing.T, s *node.Session, disputes *subscriptions.Subscription, id string) <-chan error {
	t.Helper()
	res := perundtest.Async(func() error {
		_, err := s.ForceClose(ctx, id)
		return err
	})
	timer := time.NewTimer(time.Minute)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-disputes.Events():
			require.True(t, ok, "the disputes subscription ended: %v", disputes.Err())
			if ev.(node.DisputeEvent).Event == "registered" {
				return res
			}
		case <-timer.C:
			t.Fatal("no registered event")
		case <-ctx.Done():
			t.Fatal("no registered event")
		}
	}
}

// flakyChain refuses transactions while down is set.
type flakyChain struct {
	chain.Backend
	down atomic.Bool
}

func (c *flakyChain) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	if c.down.Load() {
		return errors.New("chain down (test)")
	}
	return c.Backend.SendTransaction(ctx, tx)
}

// TestSettleRetriesWithBackoff: while the chain refuses transactions, a
// close waits for a settle that retries with a growing delay instead of
// restarting at once; the retries go on without a caller, and once the
// chain is back the channel closes as agreed and alice's share arrives,
// to the wei.
func TestSettleRetriesWithBackoff(t *testing.T) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	flaky := &flakyChain{Backend: v.chain}
	rec, lg := newLogRecorder()
	na := v.nodeWith(t, t.TempDir(), map[string]string{keyAlice: "alice"}, testNode{log: lg, chain: flaky})
	nb := v.node(t, map[string]string{keyBob: "bob"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	alice, bob := loginPair(t, na, nb, addrs)
	ci := openAccepted(ctx, t, alice, bob, eth(5), eth(5))
	_, err := alice.Send(ctx, ci.ChannelID, eth(1))
	require.NoError(t, err)
	bobAgrees, err := perundtest.AcceptNext(ctx, bob, node.KindClose, 2*time.Minute)
	require.NoError(t, err)

	from, before := v.balanceNow(t, addrs[0])
	flaky.down.Store(true)
	_, err = alice.Close(ctx, ci.ChannelID)
	var ce *node.ChainError
	require.ErrorAs(t, err, &ce, "the final state is signed, its conclude is refused")
	require.NoError(t, perundtest.Recv(t, bobAgrees, time.Minute, "bob agrees to the close"))
	rec.reset()
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = alice.Close(cctx, ci.ChannelID)
	ccancel()
	var te *node.TimeoutError
	require.ErrorAs(t, err, &te)
	attempts := rec.count("settle channel")
	t.Logf("%d settle attempts in 3 s", attempts)
	require.Positive(t, attempts)
	require.LessOrEqual(t, attempts, 4, "attempts 1 s, 2 s, 4 s... apart, not every 50 ms")
	require.Positive(t, rec.count("settle failed; retrying"))
	// Bob, who agreed, concludes the final state himself when alice's
	// conclusion has not come for a few blocks (go-perun's secondary
	// settle), and withdraws. The chain comes back for alice once his
	// conclusion is mined: a retry of hers that read the chain before it
	// was would send a concludeFinal that reverts after his.
	require.Eventually(t, func() bool {
		c, err := bob.Channel(ci.ChannelID)
		return err == nil && c.State == node.StateClosed
	}, 2*time.Minute, 50*time.Millisecond, "bob concludes and withdraws")

	flaky.down.Store(false)
	var got node.ChannelInfo
	require.Eventually(t, func() bool {
		got, err = alice.Channel(ci.ChannelID)
		return err == nil && got.State == node.StateClosed
	}, 2*time.Minute, 50*time.Millisecond, "the retries go on without a caller")
	require.Equal(t, "agreement", got.ClosedBy)
	require.Equal(t, eth(4).String(), got.Balance.Mine)
	v.requireWithdrew(t, addrs[0], before[0], eth(4), from, "alice's share after the refused settles")
}
