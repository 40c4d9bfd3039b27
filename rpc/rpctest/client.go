// Package rpctest is a small JSON-RPC 2.0 WebSocket client for tests of
// perund's API: calls, raw frames and subscription notifications.
package rpctest

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// Client is a connection to perund's /rpc.
type Client struct {
	t      testing.TB
	WS     *websocket.Conn
	wmu    sync.Mutex
	nextID atomic.Int64
	mu     sync.Mutex
	wait   map[string]chan map[string]any
	// Raw receives frames that are neither call responses nor notifications.
	Raw chan []byte
	// Notes receives perun_subscription notifications.
	Notes chan map[string]any
	// ReadErr is the error that ended the connection (valid once Raw is closed).
	ReadErr error
	closed  bool
}

// CodeConnectionClosed is the error code Call reports when the connection
// ended before the answer came (not a JSON-RPC code).
const CodeConnectionClosed = -1

var closedAnswer = map[string]any{"error": map[string]any{"code": float64(CodeConnectionClosed), "message": "connection closed"}}

// Dial connects to url; the connection is closed at the end of the test.
func Dial(t testing.TB, url string) *Client {
	t.Helper()
	return DialWith(t, websocket.DefaultDialer, url)
}

// DialWith connects to url with d (for TLS settings or headers); the
// connection is closed at the end of the test.
func DialWith(t testing.TB, d *websocket.Dialer, url string) *Client {
	t.Helper()
	ws, _, err := d.Dial(url, nil)
	require.NoError(t, err)
	c := &Client{t: t, WS: ws, wait: map[string]chan map[string]any{}, Raw: make(chan []byte, 100), Notes: make(chan map[string]any, 100000)}
	go c.read()
	t.Cleanup(func() { ws.Close() })
	return c
}

func (c *Client) read() {
	for {
		_, data, err := c.WS.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.ReadErr = err
			c.closed = true
			for id, ch := range c.wait {
				ch <- closedAnswer
				delete(c.wait, id)
			}
			c.mu.Unlock()
			close(c.Raw)
			return
		}
		var m map[string]any
		if json.Unmarshal(data, &m) == nil {
			if m["method"] == "perun_subscription" {
				c.Notes <- m
				continue
			}
			if id, ok := m["id"].(string); ok && strings.HasPrefix(id, "c-") {
				c.mu.Lock()
				ch := c.wait[id]
				delete(c.wait, id)
				c.mu.Unlock()
				if ch != nil {
					ch <- m
					continue
				}
			}
		}
		c.Raw <- data
	}
}

// Send writes one raw frame.
func (c *Client) Send(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	require.NoError(c.t, c.WS.WriteMessage(websocket.TextMessage, []byte(s)))
}

// Next returns the next raw frame.
func (c *Client) Next() []byte {
	select {
	case d, ok := <-c.Raw:
		require.True(c.t, ok, "connection closed")
		return d
	case <-time.After(10 * time.Second):
		c.t.Fatal("no message within 10s")
		return nil
	}
}

// Call sends a request and returns its response object.
func (c *Client) Call(method string, params any) map[string]any {
	m, ok := c.call(method, params, 5*time.Minute)
	if !ok {
		c.t.Fatalf("no answer to %s", method)
	}
	return m
}

// call sends a request and waits up to timeout for its response object
// (closedAnswer when the connection is or gets closed); ok is false when
// none came in time.
func (c *Client) call(method string, params any, timeout time.Duration) (m map[string]any, ok bool) {
	id := fmt.Sprintf("c-%d", c.nextID.Add(1))
	ch := make(chan map[string]any, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return closedAnswer, true
	}
	c.wait[id] = ch
	c.mu.Unlock()
	req := map[string]any{"jsonrpc": "2.0", "id": id, "method": method}
	if params != nil {
		req["params"] = params
	}
	b, _ := json.Marshal(req)
	c.wmu.Lock()
	err := c.WS.WriteMessage(websocket.TextMessage, b)
	c.wmu.Unlock()
	if err != nil {
		return closedAnswer, true
	}
	select {
	case m := <-ch:
		return m, true
	case <-time.After(timeout):
		return nil, false
	}
}

// OK calls and requires a result, decoded into out if given.
func (c *Client) OK(method string, params any, out any) {
	c.t.Helper()
	m := c.Call(method, params)
	require.Nil(c.t, m["error"], "%s: %v", method, m["error"])
	if out != nil {
		b, _ := json.Marshal(m["result"])
		require.NoError(c.t, json.Unmarshal(b, out))
	}
}

// Fail calls and requires an error with code; it returns the error object.
func (c *Client) Fail(method string, params any, code int) map[string]any {
	c.t.Helper()
	m := c.Call(method, params)
	e, ok := m["error"].(map[string]any)
	require.True(c.t, ok, "%s: want error %d, got %v", method, code, m["result"])
	require.EqualValues(c.t, code, e["code"], "%s: %v", method, e)
	return e
}

// Note waits up to timeout for a notification whose result matches pred.
func (c *Client) Note(timeout time.Duration, pred func(map[string]any) bool) map[string]any {
	c.t.Helper()
	r, err := c.TryNote(timeout, pred)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// TryCall is Call for other goroutines than the test's: it never fails
// the test; an error answer, no answer within timeout or a closed
// connection is its error.
func (c *Client) TryCall(method string, params any, timeout time.Duration) (any, error) {
	m, ok := c.call(method, params, timeout)
	if !ok {
		return nil, fmt.Errorf("%s: no answer within %s", method, timeout)
	}
	if m["error"] != nil {
		return nil, fmt.Errorf("%s: %v", method, m["error"])
	}
	return m["result"], nil
}

// TryNote is Note for other goroutines than the test's: it returns an
// error instead of failing the test.
func (c *Client) TryNote(timeout time.Duration, pred func(map[string]any) bool) (map[string]any, error) {
	deadline := time.After(timeout)
	for {
		select {
		case n := <-c.Notes:
			r := n["params"].(map[string]any)["result"].(map[string]any)
			if pred(r) {
				return r, nil
			}
		case <-deadline:
			return nil, fmt.Errorf("notification did not arrive within %s", timeout)
		}
	}
}
