package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Network timing of a connection.
const (
	// writeWait bounds each write.
	writeWait = 10 * time.Second
	// idleWait bounds the silence of the node: it pings every 20 s
	// (rpc.pingPeriod), so a connection without any frame for this long
	// is dead.
	idleWait = 90 * time.Second
	// closeGrace is how long a closing connection waits for the node's
	// answer to its close frame.
	closeGrace = 2 * time.Second
	// readLimit is the largest message read.
	readLimit = 64 << 20
)

// RPCError is a JSON-RPC 2.0 error answered by the node.
type RPCError struct {
	Code    int64           `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Error returns the code and message.
func (e *RPCError) Error() string { return fmt.Sprintf("%s (code %d)", e.Message, e.Code) }

// Notification is the params of a perun_subscription notification.
type Notification struct {
	Subscription string          `json:"subscription"`
	Result       json.RawMessage `json:"result"`
}

// ClosedError reports that the connection ended while a call or a watch
// waited on it.
type ClosedError struct {
	// Err is the read error, a *websocket.CloseError when the node closed
	// the connection with a close frame.
	Err error
}

// Error describes how the connection ended.
func (e *ClosedError) Error() string {
	var ce *websocket.CloseError
	if errors.As(e.Err, &ce) {
		return fmt.Sprintf("the node closed the connection (%d %s)", ce.Code, strings.TrimSpace(closeText(ce)))
	}
	return "connection lost: " + e.Err.Error()
}

// Unwrap returns the read error.
func (e *ClosedError) Unwrap() error { return e.Err }

func closeText(ce *websocket.CloseError) string {
	name := map[int]string{websocket.CloseNormalClosure: "normal", websocket.CloseGoingAway: "going away",
		websocket.CloseMessageTooBig: "message too big", websocket.CloseInternalServerErr: "internal error"}[ce.Code]
	switch {
	case name != "" && ce.Text != "":
		return name + ": " + ce.Text
	case ce.Text != "":
		return ce.Text
	}
	return name
}

// Conn is a connection to a node's /rpc: one call at a time, with the
// notifications that arrive kept for Next. Its methods are for one
// goroutine; a context ending during a call or Next closes the connection.
type Conn struct {
	ws     *websocket.Conn
	nextID int64
	// queued are notifications read while waiting for an answer.
	queued []Notification
	// readErr is set once a read failed: the connection is gone.
	readErr error

	closeOnce sync.Once
	// grace closes the socket if the node does not answer the close frame.
	grace *time.Timer
}

// Dial connects to the node at url, sending token (if any) as
// "Authorization: Bearer" on the upgrade.
func Dial(ctx context.Context, url, token string) (*Conn, error) {
	d := websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: StepTimeout}
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	ws, resp, err := d.DialContext(ctx, url, h)
	if err != nil {
		if resp != nil && errors.Is(err, websocket.ErrBadHandshake) {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			msg := fmt.Sprintf("connect to %s: the node answered %s", url, resp.Status)
			if b := strings.TrimSpace(string(body)); b != "" {
				msg += ": " + b
			}
			if resp.StatusCode == http.StatusUnauthorized {
				msg += " (give the node's rpc.authToken with -token or PERUND_TOKEN)"
			}
			return nil, errors.New(msg)
		}
		return nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	c := &Conn{ws: ws}
	ws.SetReadLimit(readLimit)
	ws.SetPingHandler(func(data string) error {
		_ = ws.SetReadDeadline(time.Now().Add(idleWait))
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeWait))
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
			return fmt.Errorf("answer ping: %w", err)
		}
		return nil
	})
	return c, nil
}

// request is a JSON-RPC 2.0 request.
type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      int64           `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// message is any frame of the node: an answer or a notification.
type message struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *RPCError       `json:"error"`
}

// Call sends method with params (nil: none) and returns the result. An
// error answer is a *RPCError; a connection that ends first a
// *ClosedError; a context that ends first closes the connection and
// returns the context's error, wrapped.
func (c *Conn) Call(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	if c.readErr != nil {
		return nil, fmt.Errorf("call %s: %w", method, &ClosedError{c.readErr})
	}
	stop := context.AfterFunc(ctx, c.abort)
	defer stop()
	c.nextID++
	id := c.nextID
	data, err := json.Marshal(request{JSONRPC: "2.0", ID: id, Method: method, Params: params})
	if err != nil {
		return nil, fmt.Errorf("encode call %s: %w", method, err)
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeWait))
	if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("call %s: %w", method, context.Cause(ctx))
		}
		return nil, fmt.Errorf("send call %s: %w", method, err)
	}
	want := strconv.FormatInt(id, 10)
	for {
		m, err := c.read()
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("call %s: %w", method, context.Cause(ctx))
			}
			return nil, fmt.Errorf("call %s: %w", method, err)
		}
		if m.Method != "" {
			continue // read queued it if it is a notification
		}
		got := string(bytes.TrimSpace(m.ID))
		if got != want && !(got == "null" && m.Error != nil) {
			continue // not ours
		}
		if m.Error != nil {
			return nil, m.Error
		}
		if m.Result == nil {
			return nil, fmt.Errorf("call %s: the node's answer has neither result nor error", method)
		}
		return m.Result, nil
	}
}

// Next returns the next notification: one that arrived during a call, or
// the next one read. A connection that ends first is a *ClosedError; a
// context that ends first closes the connection (cleanly: with a close
// frame the node answers) and returns the context's error, wrapped.
func (c *Conn) Next(ctx context.Context) (Notification, error) {
	if len(c.queued) > 0 {
		n := c.queued[0]
		c.queued = c.queued[1:]
		return n, nil
	}
	if c.readErr != nil {
		return Notification{}, &ClosedError{c.readErr}
	}
	stop := context.AfterFunc(ctx, c.abort)
	defer stop()
	for {
		if _, err := c.read(); err != nil {
			if ctx.Err() != nil {
				return Notification{}, fmt.Errorf("wait for notifications: %w", context.Cause(ctx))
			}
			return Notification{}, err
		}
		if len(c.queued) > 0 {
			n := c.queued[0]
			c.queued = c.queued[1:]
			return n, nil
		}
	}
}

// read reads one message; notifications are queued.
func (c *Conn) read() (message, error) {
	for {
		_ = c.ws.SetReadDeadline(time.Now().Add(idleWait))
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.readErr = err
			return message{}, &ClosedError{err}
		}
		var m message
		if err := json.Unmarshal(data, &m); err != nil {
			continue // not JSON-RPC: nothing of ours
		}
		if m.Method == "perun_subscription" {
			var n Notification
			if err := json.Unmarshal(m.Params, &n); err == nil {
				c.queued = append(c.queued, n)
			}
		}
		return m, nil
	}
}

// abort starts closing the connection: it sends a close frame, which the
// node answers with its own (ending the read in progress), and closes the
// socket after closeGrace if it does not. Any goroutine may call it.
func (c *Conn) abort() {
	c.closeOnce.Do(func() {
		_ = c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(writeWait))
		c.grace = time.AfterFunc(closeGrace, func() { c.ws.Close() })
	})
}

// Close closes the connection cleanly: a close frame, the node's answer
// awaited for at most closeGrace, then the socket.
func (c *Conn) Close() error {
	c.abort()
	if c.readErr == nil {
		_ = c.ws.SetReadDeadline(time.Now().Add(closeGrace))
		for {
			if _, _, err := c.ws.ReadMessage(); err != nil {
				c.readErr = err
				break
			}
		}
	}
	c.grace.Stop()
	if err := c.ws.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close connection: %w", err)
	}
	return nil
}
