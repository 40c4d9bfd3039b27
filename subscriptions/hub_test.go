package subscriptions

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTopics(t *testing.T) {
	h := NewHub(4)
	tests := []struct {
		topic string
		ok    bool
	}{{"proposals", true}, {"updates", true}, {"channels", true}, {"disputes", true}, {"blocks", false}, {"", false}}
	for _, tc := range tests {
		t.Run(tc.topic, func(t *testing.T) {
			_, err := h.Subscribe(Topic(tc.topic))
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrUnknownTopic)
			}
		})
	}
}

func TestFanOutAndOrder(t *testing.T) {
	h := NewHub(100)
	a, err := h.Subscribe(Updates)
	require.NoError(t, err)
	b, err := h.Subscribe(Updates)
	require.NoError(t, err)
	c, err := h.Subscribe(Channels)
	require.NoError(t, err)
	require.NotEqual(t, a.ID(), b.ID())
	require.Regexp(t, "^0x[0-9a-f]{32}$", a.ID())
	for i := 0; i < 10; i++ {
		h.Publish(Updates, i)
	}
	for _, s := range []*Subscription{a, b} {
		for i := 0; i < 10; i++ {
			require.Equal(t, i, <-s.Events())
		}
	}
	require.Len(t, c.Events(), 0, "other topics get nothing")
	require.True(t, h.Unsubscribe(a.ID()))
	require.False(t, h.Unsubscribe(a.ID()))
	_, open := <-a.Events()
	require.False(t, open)
	require.NoError(t, a.Err())
	require.Equal(t, 1, h.Subscribers(Updates))
	h.Close()
	_, open = <-b.Events()
	require.False(t, open)
}

func TestSlowSubscriberDoesNotBlock(t *testing.T) {
	h := NewHub(2)
	slow, err := h.Subscribe(Channels)
	require.NoError(t, err)
	fast, err := h.Subscribe(Channels)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	got := 0
	go func() {
		defer wg.Done()
		for range fast.Events() {
			got++
		}
	}()
	for i := 0; i < 3; i++ {
		h.Publish(Channels, i)
	}
	// The slow one overflowed and ended, publishing never blocked.
	for range slow.Events() {
	}
	require.ErrorIs(t, slow.Err(), ErrOverflow)
	h.Close()
	wg.Wait()
	require.GreaterOrEqual(t, got, 2)
}

// TestHold: held events go to the next subscriber of their topic only,
// first and in order, and at most half a buffer is held.
func TestHold(t *testing.T) {
	h := NewHub(6)
	for i := 0; i < 5; i++ {
		h.Hold(Disputes, i)
	}
	other, err := h.Subscribe(Channels)
	require.NoError(t, err)
	first, err := h.Subscribe(Disputes)
	require.NoError(t, err)
	h.Publish(Disputes, "live")
	var got []any
	for len(got) < 4 {
		got = append(got, <-first.Events())
	}
	require.Equal(t, []any{2, 3, 4, "live"}, got, "the newest three, oldest first, then live ones")
	second, err := h.Subscribe(Disputes)
	require.NoError(t, err)
	h.Publish(Disputes, "later")
	require.Equal(t, "later", <-second.Events(), "held events are delivered once")
	require.Empty(t, other.Events())
	h.Close()
}
