package rpc_test

import (
	"context"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/perund/perund/node"
	"github.com/perund/perund/rpc/rpctest"
	"github.com/perund/perund/subscriptions"
)

// subscriptionCount counts the active subscriptions of s on every topic.
func subscriptionCount(s *node.Session) int {
	n := 0
	for _, t := range subscriptions.Topics() {
		n += s.Hub().Subscribers(t)
	}
	return n
}

// TestSubscribeThenDrop: connections that send perun_subscribe and close
// at once, while the call is still running, leave no subscription and no
// goroutine behind (issue 11: 300 such connections left 190 of each).
func TestSubscribeThenDrop(t *testing.T) {
	f := newFixture(t, nil)
	login := dial(t, f.url)
	var info struct {
		SessionID string `json:"sessionId"`
		Token     string `json:"token"`
	}
	login.ok("session_open", map[string]any{"account": f.alice.Hex(), "password": "alice"}, &info)
	sess, err := f.node.ResumeSession(info.SessionID, info.Token)
	require.NoError(t, err)
	resume := map[string]any{"sessionId": info.SessionID, "token": info.Token}
	const subscribe = `{"jsonrpc":"2.0","id":1,"method":"perun_subscribe","params":["updates"]}`

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tests := []struct {
		name  string
		close func(*rpctest.Client)
	}{
		{"connection dropped", func(c *rpctest.Client) { c.WS.Close() }},
		{"close frame", func(c *rpctest.Client) {
			_ = c.WS.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			c.WS.Close()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, f.srv.WaitConns(ctx, 1), "only the login connection is open")
			baseline := goleak.IgnoreCurrent()
			for i := 0; i < 150; i++ {
				c := rpctest.Dial(t, f.url)
				c.OK("session_resume", resume, nil)
				c.Send(subscribe)
				tc.close(c)
			}
			require.NoError(t, f.srv.WaitConns(ctx, 1), "the closed connections end")
			require.Zero(t, subscriptionCount(sess), "subscriptions left behind")
			require.NoError(t, goleak.Find(baseline), "goroutines left behind")
		})
	}
	var id string
	login.ok("perun_subscribe", []string{"updates"}, &id)
	require.Equal(t, 1, subscriptionCount(sess), "the open connection still subscribes")
}
