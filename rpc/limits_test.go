package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/node"
	"github.com/perund/perund/rpc"
	"github.com/perund/perund/subscriptions"
)

// rawDial opens a WebSocket to url that nothing reads from unless the test
// does; its TCP receive buffer is small when small is set, so that a
// client that stops reading pushes back on the server soon.
func rawDial(t *testing.T, url string, small bool) *websocket.Conn {
	t.Helper()
	d := *websocket.DefaultDialer
	d.NetDial = func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil && small {
			err = c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}
	ws, _, err := d.Dial(url, nil)
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	return ws
}

// rawCall sends a request on ws and reads frames until its answer (10 s).
func rawCall(t *testing.T, ws *websocket.Conn, method string, params any) map[string]any {
	t.Helper()
	require.NoError(t, ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": "raw", "method": method, "params": params}))
	require.NoError(t, ws.SetReadDeadline(time.Now().Add(10*time.Second)))
	defer func() { _ = ws.SetReadDeadline(time.Time{}) }()
	for {
		var m map[string]any
		require.NoError(t, ws.ReadJSON(&m))
		if m["id"] == "raw" {
			require.Nil(t, m["error"], "%s: %v", method, m["error"])
			return m
		}
	}
}

// TestConnectionCap: at rpc.maxConnections open connections a further
// upgrade is refused with 503 and says why; the open ones keep working,
// and once one closes a new one is accepted.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	f := newFixture(t, map[string]any{"rpc.maxConnections": 2})
	a, b := dial(t, f.url), dial(t, f.url)
	ws, resp, err := websocket.DefaultDialer.Dial(f.url, nil)
	if ws != nil {
		ws.Close()
	}
	require.ErrorIs(t, err, websocket.ErrBadHandshake, "a third connection is refused")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), "too many connections")
	var info map[string]any
	a.ok("node_info", nil, &info)
	b.ok("node_info", nil, &info)

	b.WS.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, f.srv.WaitConns(ctx, 1))
	dial(t, f.url).ok("node_info", nil, &info)
}

// TestDeadClientDropped: a client whose TCP connection stays up but that
// answers no ping (it reads nothing) is dropped after the pong wait; a
// client that answers every ping stays connected through three pong
// waits and is served.
func TestDeadClientDropped(t *testing.T) {
	t.Parallel()
	const ping, wait = 250 * time.Millisecond, 2 * time.Second
	f := newFixtureServer(t, nil, nil, func(s *rpc.Server) { s.SetKeepaliveForTest(ping, wait) })
	live := rawDial(t, f.url, false)
	var pings atomic.Int32
	live.SetPingHandler(func(data string) error {
		pings.Add(1)
		return live.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	frames := make(chan []byte, 16)
	readErr := make(chan error, 1)
	go func() { // the live client reads (and so answers pings)
		for {
			_, data, err := live.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			frames <- data
		}
	}()
	dead := rawDial(t, f.url, false) // never read: no pong

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, f.srv.WaitConns(ctx, 1), "the dead client is dropped")
	require.NoError(t, dead.SetReadDeadline(time.Now().Add(10*time.Second)))
	var err error
	for err == nil { // what the server sent before it closed, then the end
		_, _, err = dead.ReadMessage()
	}
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the dead client's connection is closed by the server: %v", err)

	// The live one answered pings for three pong waits and is still
	// served (a pong may take 1.75 s on a loaded machine).
	for pings.Load() < int32(3*wait/ping) {
		select {
		case err := <-readErr:
			t.Fatalf("the live client was dropped after %d pings: %v", pings.Load(), err)
		case <-ctx.Done():
			t.Fatalf("only %d pings", pings.Load())
		case <-time.After(ping):
		}
	}
	require.NoError(t, live.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "node_info"}))
	select {
	case data := <-frames:
		require.Contains(t, string(data), `"result"`)
	case err := <-readErr:
		t.Fatalf("the live client was dropped: %v", err)
	case <-ctx.Done():
		t.Fatal("no answer")
	}
}

// TestSlowSubscriberDropped: two connections of one session subscribe to
// the channels topic; one stops reading. Events are published in batches,
// each one only once the fast subscriber got the last: the slow one's
// backlog grows (socket buffers, then its subscription's buffer) until its
// subscription is ended; the fast one got every event, in order, exactly
// once, and is still subscribed: it never overflowed.
func TestSlowSubscriberDropped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	fast := dial(t, f.url)
	var info struct {
		SessionID string `json:"sessionId"`
		Token     string `json:"token"`
	}
	fast.ok("session_open", map[string]any{"account": f.alice.Hex(), "password": "alice"}, &info)
	sess, err := f.node.ResumeSession(info.SessionID, info.Token)
	require.NoError(t, err)
	var fastSub string
	fast.ok("perun_subscribe", []string{"channels"}, &fastSub)

	slow := rawDial(t, f.url, true)
	rawCall(t, slow, "session_resume", map[string]any{"sessionId": info.SessionID, "token": info.Token})
	slowSub, _ := rawCall(t, slow, "perun_subscribe", []string{"channels"})["result"].(string)
	require.True(t, sess.Hub().Has(slowSub))
	// From here on the slow client reads nothing.

	pad := make([]string, 40) // about 3 KiB an event
	for i := range pad {
		pad[i] = "0x" + strings.Repeat("ab", 32)
	}
	const batch, limit = 50, 20000
	sent, extra := 0, -1
	for extra != 0 {
		require.Less(t, sent, limit, "the slow subscriber was never dropped")
		for i := 0; i < batch; i++ {
			sess.Hub().Publish(subscriptions.Channels, node.ChannelInfo{ChannelID: fmt.Sprint(sent), TxHashes: pad})
			sent++
		}
		for got := sent - batch; got < sent; got++ {
			select {
			case n := <-fast.Notes:
				params := n["params"].(map[string]any)
				require.Equal(t, fastSub, params["subscription"])
				require.Equal(t, fmt.Sprint(got), params["result"].(map[string]any)["channelId"], "in order, none lost")
			case <-time.After(30 * time.Second):
				t.Fatalf("the fast subscriber got %d of %d events", got, sent)
			}
		}
		switch {
		case extra > 0:
			extra--
		case !sess.Hub().Has(slowSub):
			t.Logf("slow subscriber dropped after %d events", sent)
			extra = 2 // the fast one goes on getting events
		}
	}
	require.True(t, sess.Hub().Has(fastSub), "the fast subscriber never overflowed")
	select {
	case n := <-fast.Notes:
		t.Fatalf("an event more than published: %v", n)
	default:
	}
	var ok bool
	fast.ok("perun_unsubscribe", []string{fastSub}, &ok)
	require.True(t, ok, "the fast subscription was still there to end")
}

// TestHandlerPanicRecovered: a method whose handler panics answers
// -32603 without detail; the connection and the server go on serving.
func TestHandlerPanicRecovered(t *testing.T) {
	t.Parallel()
	f := newFixtureServer(t, nil, nil, func(s *rpc.Server) { s.AddPanickingMethodForTest("test_panic", "boom") })
	c := dial(t, f.url)
	e := c.fail("test_panic", nil, -32603)
	require.Equal(t, "internal error", e["message"])
	b, err := json.Marshal(e)
	require.NoError(t, err)
	require.NotContains(t, string(b), "boom", "the panic's value is not shown to the client")
	var info map[string]any
	c.ok("node_info", nil, &info)
	dial(t, f.url).ok("node_info", nil, &info)
}
