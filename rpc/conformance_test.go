package rpc_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// TestSpecExamples runs the examples of the JSON-RPC 2.0 specification
// (section 7) over a real WebSocket, with perund's methods standing in for
// the specification's subtract, sum, update and get_data.
func TestSpecExamples(t *testing.T) {
	f := newFixture(t, nil)
	c := dial(t, f.url)

	tests := []struct {
		name string
		send string
		want string // JSON; "" means no answer
	}{
		{"positional (array) params", `{"jsonrpc":"2.0","method":"contacts_get","params":[{"alias":"x"}],"id":1}`,
			`{"jsonrpc":"2.0","error":{"code":1001},"id":1}`},
		{"named params", `{"jsonrpc":"2.0","method":"perun_unsubscribe","params":{"subscription":"0x1"},"id":2}`,
			`{"jsonrpc":"2.0","error":{"code":1001},"id":2}`},
		{"no params", `{"jsonrpc":"2.0","method":"account_list","id":3}`, `{"jsonrpc":"2.0","id":3}`},
		{"notification", `{"jsonrpc":"2.0","method":"node_info","params":[]}`, ""},
		{"notification of unknown method", `{"jsonrpc":"2.0","method":"foobar"}`, ""},
		{"non-existent method", `{"jsonrpc":"2.0","method":"foobar","id":"1"}`,
			`{"jsonrpc":"2.0","error":{"code":-32601},"id":"1"}`},
		{"invalid JSON", `{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]`,
			`{"jsonrpc":"2.0","error":{"code":-32700},"id":null}`},
		{"invalid request object", `{"jsonrpc":"2.0","method":1,"params":"bar"}`,
			`{"jsonrpc":"2.0","error":{"code":-32600},"id":null}`},
		{"batch, invalid JSON", `[{"jsonrpc":"2.0","method":"sum","params":[1,2,4],"id":"1"},{"jsonrpc":"2.0","method"]`,
			`{"jsonrpc":"2.0","error":{"code":-32700},"id":null}`},
		{"empty array", `[]`, `{"jsonrpc":"2.0","error":{"code":-32600},"id":null}`},
		{"invalid batch, not empty", `[1]`, `[{"jsonrpc":"2.0","error":{"code":-32600},"id":null}]`},
		{"invalid batch", `[1,2,3]`, `[{"jsonrpc":"2.0","error":{"code":-32600},"id":null},{"jsonrpc":"2.0","error":{"code":-32600},"id":null},{"jsonrpc":"2.0","error":{"code":-32600},"id":null}]`},
		{"batch", `[
			{"jsonrpc":"2.0","method":"node_info","id":"1"},
			{"jsonrpc":"2.0","method":"node_info"},
			{"jsonrpc":"2.0","method":"account_list","params":[],"id":"2"},
			{"foo":"boo"},
			{"jsonrpc":"2.0","method":"foo.get","params":{"name":"myself"},"id":"5"},
			{"jsonrpc":"2.0","method":"rpc_discover","id":"9"}]`,
			`[{"jsonrpc":"2.0","id":"1"},{"jsonrpc":"2.0","id":"2"},{"jsonrpc":"2.0","error":{"code":-32600},"id":null},{"jsonrpc":"2.0","error":{"code":-32601},"id":"5"},{"jsonrpc":"2.0","id":"9"}]`},
		{"batch of notifications", `[{"jsonrpc":"2.0","method":"node_info"},{"jsonrpc":"2.0","method":"account_list"}]`, ""},
		{"wrong version", `{"jsonrpc":"1.0","method":"node_info","id":7}`, `{"jsonrpc":"2.0","error":{"code":-32600},"id":7}`},
		{"params not structured", `{"jsonrpc":"2.0","method":"node_info","params":3,"id":8}`, `{"jsonrpc":"2.0","error":{"code":-32600},"id":8}`},
		{"id object", `{"jsonrpc":"2.0","method":"node_info","id":{"a":1}}`, `{"jsonrpc":"2.0","error":{"code":-32600},"id":null}`},
		{"id null", `{"jsonrpc":"2.0","method":"node_info","id":null}`, `{"jsonrpc":"2.0","id":null}`},
		{"id negative fraction", `{"jsonrpc":"2.0","method":"node_info","id":-1.5}`, `{"jsonrpc":"2.0","id":-1.5}`},
		{"id big number", `{"jsonrpc":"2.0","method":"node_info","id":123456789012345678901234567890}`, `{"jsonrpc":"2.0","id":123456789012345678901234567890}`},
		{"invalid params", `{"jsonrpc":"2.0","method":"node_info","params":{"x":1},"id":10}`, `{"jsonrpc":"2.0","error":{"code":-32602},"id":10}`},
		{"scalar JSON", `42`, `{"jsonrpc":"2.0","error":{"code":-32600},"id":null}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.send(tc.send)
			// A sentinel request: whatever comes before its answer answered tc.
			c.send(`{"jsonrpc":"2.0","method":"node_info","id":"sentinel"}`)
			var answer []byte
			gotSentinel := false
			for !gotSentinel || (answer == nil && tc.want != "") {
				msg := c.next()
				if isSentinel(msg) && !gotSentinel {
					gotSentinel = true
					continue
				}
				require.Nil(t, answer, "a second answer: %s", msg)
				answer = msg
			}
			if tc.want == "" {
				require.Nil(t, answer, "a notification got an answer: %s", answer)
				select {
				case m := <-c.Raw:
					t.Fatalf("a notification got an answer: %s", m)
				case <-time.After(200 * time.Millisecond):
				}
				return
			}
			requireShape(t, tc.want, answer)
		})
	}
}

func isSentinel(b []byte) bool {
	var m map[string]any
	return json.Unmarshal(b, &m) == nil && m["id"] == "sentinel"
}

// requireShape checks that got has every field of want (error objects by
// code; a result is required where want has no error), ids byte-exact.
func requireShape(t *testing.T, want string, got []byte) {
	t.Helper()
	var w, g any
	require.NoError(t, json.Unmarshal([]byte(want), &w))
	dec := json.NewDecoder(bytesReader(got))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&g), string(got))
	var wn any
	wdec := json.NewDecoder(bytesReader([]byte(want)))
	wdec.UseNumber()
	require.NoError(t, wdec.Decode(&wn))
	matchShape(t, wn, g, string(got))
}

func matchShape(t *testing.T, w, g any, raw string) {
	switch wv := w.(type) {
	case []any:
		gv, ok := g.([]any)
		require.True(t, ok, "want an array: %s", raw)
		require.Len(t, gv, len(wv), raw)
		for i := range wv {
			matchShape(t, wv[i], gv[i], raw)
		}
	case map[string]any:
		gv, ok := g.(map[string]any)
		require.True(t, ok, "want an object: %s", raw)
		require.Equal(t, "2.0", gv["jsonrpc"], raw)
		require.Contains(t, gv, "id", raw)
		require.Equal(t, wv["id"], gv["id"], "id echo: %s", raw)
		if we, ok := wv["error"].(map[string]any); ok {
			ge, ok := gv["error"].(map[string]any)
			require.True(t, ok, "want an error: %s", raw)
			require.Equal(t, we["code"], ge["code"], raw)
			require.NotEmpty(t, ge["message"], raw)
			require.NotContains(t, gv, "result", raw)
		} else {
			require.Contains(t, gv, "result", raw)
			require.NotContains(t, gv, "error", raw)
		}
	}
}

func TestMessageTooBig(t *testing.T) {
	f := newFixture(t, map[string]any{"rpc.maxMessageSize": 4096})
	c := dial(t, f.url)
	other := dial(t, f.url)
	big := `{"jsonrpc":"2.0","method":"node_info","id":1,"params":{"x":"` + string(make([]byte, 8000)) + `"}}`
	c.send(big)
	select {
	case _, open := <-c.Raw:
		require.False(t, open, "no answer, the connection is closed")
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed")
	}
	require.True(t, websocket.IsCloseError(c.ReadErr, websocket.CloseMessageTooBig), "close code 1009, got %v", c.ReadErr)
	// The other connection is unaffected.
	other.ok("node_info", nil, nil)
}
