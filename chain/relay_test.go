package chain

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/core/types"
	"github.com/stretchr/testify/require"
)

// TestRelayedSubscriptions: subscriptions through relay deliver heads in
// order, end their goroutine at Unsubscribe (many subscribed and ended
// leave the goroutine count where it was) and end with the chain.
func TestRelayedSubscriptions(t *testing.T) {
	t.Parallel()
	e, err := NewEmbedded(EmbeddedOptions{BlockInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	heads := make(chan *types.Header, 4)
	sub, err := e.SubscribeNewHead(ctx, heads)
	require.NoError(t, err)
	first, _ := recv(t, heads, 30*time.Second, "a head")
	second, _ := recv(t, heads, 30*time.Second, "the next head")
	require.Equal(t, first.Number.Uint64()+1, second.Number.Uint64(), "heads in order")
	sub.Unsubscribe()
	sub.Unsubscribe() // a second call is harmless
	_, open := recv(t, sub.Err(), 10*time.Second, "Err closed")
	require.False(t, open, "Err is closed at Unsubscribe")

	before := runtime.NumGoroutine()
	for i := 0; i < 200; i++ {
		// A subscriber that reads nothing: the relay must not block Unsubscribe.
		s, err := e.SubscribeNewHead(ctx, make(chan *types.Header))
		require.NoError(t, err)
		time.Sleep(time.Millisecond)
		s.Unsubscribe()
	}
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+2 }, 10*time.Second, 20*time.Millisecond,
		"relay goroutines end at Unsubscribe (before %d, now %d)", before, runtime.NumGoroutine())
}
