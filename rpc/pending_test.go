package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/config"
	"github.com/perund/perund/rpc/rpctest"
)

// blocker is a method that runs until the test releases it; it records how
// many of its calls ran at once.
type blocker struct {
	started chan struct{}
	release chan struct{}
	mu      sync.Mutex
	running int
	most    int
}

func (b *blocker) fn(c *call) (any, error) {
	b.mu.Lock()
	b.running++
	b.most = max(b.most, b.running)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.running--
		b.mu.Unlock()
	}()
	b.started <- struct{}{}
	select {
	case <-b.release:
		return "done", nil
	case <-c.ctx.Done():
		return nil, fmt.Errorf("blocker: %w", c.ctx.Err())
	}
}

func (b *blocker) maxRunning() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.most
}

// blockerServer serves, without a node, the API with the extra method
// test_block and rpc.maxPending set to limit; it returns the URL.
func blockerServer(t *testing.T, limit int, b *blocker) string {
	t.Helper()
	cfg, err := config.Load(config.Sources{Flags: map[string]any{"dataDir": t.TempDir(), "rpc.maxPending": limit}})
	require.NoError(t, err)
	srv := NewServer(nil, cfg.RPC, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	srv.methods["test_block"] = &method{spec: spec{class: classQuick}, fn: b.fn}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		require.NoError(t, <-served)
	})
	return "ws://" + ln.Addr().String() + "/rpc"
}

// TestPendingLimit: every request takes one slot of rpc.maxPending, a
// batch member as much as a single call. Requests over the limit wait
// for a slot (the connection is not read meanwhile) and are then answered
// as usual.
func TestPendingLimit(t *testing.T) {
	const limit, calls = 2, 5
	req := func(id int) string { return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"test_block"}`, id) }
	batch := func(ids ...int) string {
		parts := make([]string, len(ids))
		for i, id := range ids {
			parts[i] = req(id)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	tests := []struct {
		name   string
		frames []string
	}{
		{"single calls", []string{req(1), req(2), req(3), req(4), req(5)}},
		{"one batch", []string{batch(1, 2, 3, 4, 5)}},
		{"a batch then single calls", []string{batch(1, 2, 3), req(4), req(5)}},
		{"single calls then a batch", []string{req(1), req(2), batch(3, 4, 5)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &blocker{started: make(chan struct{}, calls), release: make(chan struct{})}
			c := rpctest.Dial(t, blockerServer(t, limit, b))
			for _, f := range tc.frames {
				c.Send(f)
			}
			deadline := time.After(time.Minute)
			wait := func(ch chan struct{}, send bool, what string) {
				t.Helper()
				if send {
					select {
					case ch <- struct{}{}:
					case <-deadline:
						t.Fatal(what)
					}
					return
				}
				select {
				case <-ch:
				case <-deadline:
					t.Fatal(what)
				}
			}
			for i := 0; i < limit; i++ {
				wait(b.started, false, "the first calls did not start")
			}
			// Release the calls one by one: each release lets one more in.
			for i := 0; i < calls; i++ {
				wait(b.release, true, "no call to release")
				if i+limit < calls {
					wait(b.started, false, "a waiting call did not start")
				}
			}
			require.Equal(t, limit, b.maxRunning(), "calls running at once")

			results := map[float64]any{}
			for len(results) < calls {
				frame := c.Next()
				var resps []map[string]any
				if strings.HasPrefix(string(frame), "[") {
					require.NoError(t, json.Unmarshal(frame, &resps))
				} else {
					var r map[string]any
					require.NoError(t, json.Unmarshal(frame, &r))
					resps = append(resps, r)
				}
				for _, r := range resps {
					require.Nil(t, r["error"], "%v", r)
					results[r["id"].(float64)] = r["result"]
				}
			}
			for id := 1; id <= calls; id++ {
				require.Equal(t, "done", results[float64(id)], "call %d", id)
			}
		})
	}
}
