package node

import (
	"context"
	"io"
	"log/slog"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"

	"github.com/perund/perund/contacts"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestTaskGroup: stop cancels the tasks' context and waits for them; no
// task starts once the group stops; a stop that runs out names the tasks
// still running; a child group's tasks end with the parent's context.
func TestTaskGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := newTaskGroup(context.Background(), quietLog())
	ended := make(chan struct{})
	require.True(t, g.goTask("waiter", func(ctx context.Context) {
		<-ctx.Done()
		close(ended)
	}))
	require.NoError(t, g.stop(ctx))
	select {
	case <-ended:
	default:
		t.Fatal("stop returned before the task ended")
	}
	require.ErrorIs(t, context.Cause(g.ctx), errStopping)
	require.False(t, g.goTask("late", func(context.Context) { t.Error("a task ran after stop") }))

	stuck := newTaskGroup(context.Background(), quietLog())
	release := make(chan struct{})
	stuck.goTask("stuck", func(context.Context) { <-release })
	sctx, scancel := context.WithTimeout(ctx, 10*time.Millisecond)
	err := stuck.stop(sctx)
	scancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "stuck×1")
	close(release)
	require.NoError(t, stuck.wait(ctx))

	parent := newTaskGroup(context.Background(), quietLog())
	child := newTaskGroup(parent.ctx, quietLog())
	childEnded := make(chan struct{})
	child.goTask("child", func(ctx context.Context) { <-ctx.Done(); close(childEnded) })
	require.NoError(t, parent.stop(ctx))
	select {
	case <-childEnded:
	case <-ctx.Done():
		t.Fatal("the child's task did not end with the parent")
	}
	require.NoError(t, child.wait(ctx))
}

func TestBackoff(t *testing.T) {
	b := backoff{first: time.Second, limit: 10 * time.Second}
	var got []time.Duration
	for i := 0; i < 6; i++ {
		got = append(got, b.delay(i))
	}
	require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}, got)
	require.Equal(t, time.Minute, settleRetry.delay(1000), "capped, no overflow")
}

// TestWaitForChange: waitFor wakes on the entry's change signal, and gives
// up at its timeout or when its context ends.
func TestWaitForChange(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := &channelEntry{changed: make(chan struct{}), state: StateOpen}
	woke := make(chan bool, 1)
	go func() { woke <- e.waitFor(ctx, 0, func() bool { return e.state == StateClosed }) }()
	e.mu.Lock()
	e.moveLocked(StateClosing) // a change that does not satisfy the waiter
	e.mu.Unlock()
	e.mu.Lock()
	e.moveLocked(StateClosed)
	e.mu.Unlock()
	select {
	case ok := <-woke:
		require.True(t, ok)
	case <-ctx.Done():
		t.Fatal("waitFor missed the change")
	}
	require.False(t, e.waitFor(ctx, time.Millisecond, func() bool { return false }), "timeout")
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	require.False(t, e.waitFor(cctx, 0, func() bool { return false }), "context ended")
}

// TestCloseInClosingWindow: a channel that finishClosed has marked closed
// but not yet moved to the session's closed channels answers Close and
// ForceClose with how it closed (CI saw channel_close fail there with
// "channel cannot be closed now" right after the channel showed closed).
func TestCloseInClosingWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	book, err := contacts.Open(memContacts{}, "test")
	require.NoError(t, err)
	id := channel.ID{1}
	closedAt := time.Now().UTC()
	for _, op := range []struct {
		name  string
		close func(*Session, context.Context, string) (ChannelInfo, error)
	}{
		{"close", (*Session).Close},
		{"force close", (*Session).ForceClose},
	} {
		t.Run(op.name, func(t *testing.T) {
			s := &Session{contacts: book, channels: map[channel.ID]*channelEntry{}}
			e := &channelEntry{
				s: s, id: id, ops: make(chan struct{}, 1), changed: make(chan struct{}),
				bals: [2]*big.Int{big.NewInt(11), big.NewInt(9)}, version: 1,
				state: StateClosed, closedBy: "dispute", closedAt: &closedAt,
			}
			s.channels[id] = e
			ci, err := op.close(s, ctx, idHex(id))
			require.NoError(t, err)
			require.Equal(t, StateClosed, ci.State)
			require.Equal(t, "dispute", ci.ClosedBy)
			require.EqualValues(t, 1, ci.Version)
			require.Equal(t, "11", ci.Balance.Mine)
		})
	}
}

// memContacts is a contacts.Storage in memory.
type memContacts struct{}

func (memContacts) Read() ([]byte, bool, error) { return nil, false, nil }
func (memContacts) Write([]byte) error          { return nil }
