package subscriptions

import (
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

// TestSlowSubscriberDoesNotBlock: a subscriber that does not read is
// ended with ErrOverflow once its buffer is full; one that keeps up gets
// every event and stays subscribed.
func TestSlowSubscriberDoesNotBlock(t *testing.T) {
	h := NewHub(2)
	slow, err := h.Subscribe(Channels)
	require.NoError(t, err)
	fast, err := h.Subscribe(Channels)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		h.Publish(Channels, i) // never blocks, or the test hangs here
		require.Equal(t, i, <-fast.Events())
	}
	// The slow one overflowed at the third event and ended.
	require.False(t, h.Has(slow.ID()), "the slow one is dropped")
	require.True(t, h.Has(fast.ID()), "the fast one is still subscribed")
	require.Equal(t, 1, h.Subscribers(Channels))
	var dropped []any
	for ev := range slow.Events() {
		dropped = append(dropped, ev)
	}
	require.Equal(t, []any{0, 1}, dropped, "what fit in its buffer")
	require.ErrorIs(t, slow.Err(), ErrOverflow)
	h.Close()
	_, open := <-fast.Events()
	require.False(t, open)
	require.NoError(t, fast.Err(), "the fast one ended by the close, not dropped")
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
