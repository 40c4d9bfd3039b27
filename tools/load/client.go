package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"
)

// client is a minimal JSON-RPC 2.0 WebSocket client: concurrent calls and
// counted (or, until countOnly, delivered) notifications.
type client struct {
	ws       *websocket.Conn
	wmu      sync.Mutex
	next     atomic.Int64
	mu       sync.Mutex
	wait     map[string]chan rpcAnswer
	closed   bool
	notes    chan map[string]any
	deliver  atomic.Bool
	notified atomic.Int64
	done     chan struct{}
}

type rpcAnswer struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	ID     *string `json:"id"`
	Method string  `json:"method"`
	Params struct {
		Result map[string]any `json:"result"`
	} `json:"params"`
}

func dial(ctx context.Context, url string) (*client, error) {
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	c := &client{ws: ws, wait: map[string]chan rpcAnswer{}, notes: make(chan map[string]any, 64), done: make(chan struct{})}
	c.deliver.Store(true)
	go c.read()
	return c, nil
}

func (c *client) read() {
	defer close(c.done)
	defer close(c.notes)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.closed = true
			for id, ch := range c.wait {
				ch <- rpcAnswer{}
				delete(c.wait, id)
			}
			c.mu.Unlock()
			return
		}
		var a rpcAnswer
		if json.Unmarshal(data, &a) != nil {
			continue
		}
		if a.Method == "perun_subscription" {
			c.notified.Add(1)
			if c.deliver.Load() {
				select {
				case c.notes <- a.Params.Result:
				default:
				}
			}
			continue
		}
		if a.ID != nil {
			c.mu.Lock()
			ch := c.wait[*a.ID]
			delete(c.wait, *a.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- a
			}
		}
	}
}

// countOnly stops delivering notifications to notes; they are only counted.
func (c *client) countOnly() { c.deliver.Store(false) }

func (c *client) call(ctx context.Context, method string, params any, out any) error {
	id := strconv.FormatInt(c.next.Add(1), 10)
	ch := make(chan rpcAnswer, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("%s: connection closed", method)
	}
	c.wait[id] = ch
	c.mu.Unlock()
	req, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	if err != nil {
		return err
	}
	c.wmu.Lock()
	err = c.ws.WriteMessage(websocket.TextMessage, req)
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case a := <-ch:
		if a.ID == nil {
			return fmt.Errorf("%s: connection closed", method)
		}
		if a.Error != nil {
			return fmt.Errorf("%s: %d %s", method, a.Error.Code, a.Error.Message)
		}
		if out != nil {
			return json.Unmarshal(a.Result, out)
		}
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.wait, id)
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

func (c *client) close() {
	_ = c.ws.Close()
	<-c.done
}
