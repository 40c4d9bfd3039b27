package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe for a writer and a concurrent reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// result is what one in-process command did.
type result struct {
	code           int
	stdout, stderr string
}

// runIn runs args in-process with the environment vars (nothing else of
// the process's environment), within a minute.
func runIn(t *testing.T, vars map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut syncBuffer
	code := Run(ctx, args, testEnv(vars, &out, &errOut))
	return result{code, out.String(), errOut.String()}
}

func testEnv(vars map[string]string, out, errOut *syncBuffer) Env {
	return Env{Stdout: out, Stderr: errOut, Getenv: func(k string) string { return vars[k] }}
}

// closedPort is a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func TestRunUsage(t *testing.T) {
	t.Parallel()
	down := closedPort(t)
	tests := []struct {
		name    string
		vars    map[string]string
		args    []string
		code    int
		stdout  string // part of stdout
		stderr  string // part of stderr
		noStdio bool   // stdout must be empty
	}{
		{name: "no command", args: nil, code: 2, stderr: "usage: perund call|watch|completion"},
		{name: "unknown command", args: []string{"dev"}, code: 2, stderr: "usage:"},
		{name: "call without method", args: []string{"call"}, code: 2, stderr: "missing METHOD"},
		{name: "call help", args: []string{"call", "-h"}, code: 0, stdout: "key:=JSON takes the value as JSON"},
		{name: "call help lists flags", args: []string{"call", "--help"}, code: 0, stdout: "-list-methods"},
		{name: "unknown flag", args: []string{"call", "-bogus", "node_info"}, code: 2, stderr: "flag provided but not defined: -bogus"},
		{name: "bad param", args: []string{"call", "node_info", "peer"}, code: 2, stderr: `param "peer": want key=value`},
		{name: "bad JSON params", args: []string{"call", "channel_get", `{"channelId":`}, code: 2, stderr: "not valid JSON"},
		{name: "bad session flag", args: []string{"call", "-session", "x", "node_info"}, code: 2, stderr: "want SESSIONID:TOKEN"},
		{name: "bad session env", vars: map[string]string{EnvSession: "x"}, args: []string{"call", "node_info"}, code: 2, stderr: "want SESSIONID:TOKEN"},
		{name: "session and account", args: []string{"call", "-session", "a:b", "-account", "0x1", "node_info"}, code: 2, stderr: "not both"},
		{name: "account without password", args: []string{"call", "-account", "0x1", "node_info"}, code: 2, stderr: "set PERUND_PASSWORD"},
		{name: "bad url", args: []string{"call", "-url", "ftp://x/rpc", "node_info"}, code: 2, stderr: "want ws://"},
		{name: "bad url env", vars: map[string]string{EnvURL: "gopher://x"}, args: []string{"call", "node_info"}, code: 2, stderr: "want ws://"},
		{name: "negative timeout", args: []string{"call", "-timeout", "-1s", "node_info"}, code: 2, stderr: "-timeout must be positive"},
		{name: "list-methods with method", args: []string{"call", "--list-methods", "node_info"}, code: 2, stderr: "takes no method"},
		{name: "watch without topic", args: []string{"watch"}, code: 2, stderr: "missing TOPIC"},
		{name: "watch help", args: []string{"watch", "-h"}, code: 0, stdout: `{"topic":"…","subscription":"0x…","result":{…}}`},
		{name: "completion without shell", args: []string{"completion"}, code: 2, stderr: "want: perund completion bash"},
		{name: "completion zsh", args: []string{"completion", "zsh"}, code: 2, stderr: "want: perund completion bash"},
		{name: "completion bash", args: []string{"completion", "bash"}, code: 0, stdout: "complete -F _perund perund"},
		{name: "no node", args: []string{"call", "-url", down, "node_info"}, code: 1, stderr: "connect to ws://" + down + "/rpc", noStdio: true},
		{name: "no node from env", vars: map[string]string{EnvURL: down}, args: []string{"watch", "channels"}, code: 1, stderr: "connect to ws://" + down + "/rpc", noStdio: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runIn(t, tc.vars, tc.args...)
			require.Equal(t, tc.code, r.code, "stderr: %s", r.stderr)
			require.Contains(t, r.stdout, tc.stdout)
			require.Contains(t, r.stderr, tc.stderr)
			if tc.code == 2 {
				require.Contains(t, r.stderr+r.stdout, "-h")
			}
			if tc.noStdio {
				require.Empty(t, r.stdout)
			}
		})
	}
}

// fakeNode is a WebSocket server standing in for a node that misbehaves:
// answer decides what it does with each request.
type fakeNode struct {
	url string
	// closed receives the error that ended each connection's read loop.
	closed chan error
}

func newFakeNode(t *testing.T, answer func(ws *websocket.Conn, req map[string]any)) *fakeNode {
	t.Helper()
	f := &fakeNode{closed: make(chan error, 10)}
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				f.closed <- err
				return
			}
			var req map[string]any
			assert.NoError(t, json.Unmarshal(data, &req))
			answer(ws, req)
		}
	}))
	t.Cleanup(srv.Close)
	f.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/rpc"
	return f
}

// nextClose is the error that ended the next connection on the fake node.
func (f *fakeNode) nextClose(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f.closed:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not close its connection")
		return nil
	}
}

// answerDiscover answers req with the document doc (JSON) if it is
// rpc_discover and reports whether it was.
func answerDiscover(t *testing.T, ws *websocket.Conn, req map[string]any, doc string) bool {
	if req["method"] != "rpc_discover" {
		return false
	}
	id, _ := json.Marshal(req["id"])
	assert.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","result":`+doc+`,"id":`+string(id)+`}`)))
	return true
}

// TestCallTimeout: a node that never answers: the call gives up after
// -timeout with exit code 1 and closes the connection with a close frame.
func TestCallTimeout(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t, func(*websocket.Conn, map[string]any) {})
	start := time.Now()
	r := runIn(t, nil, "call", "-url", f.url, "-timeout", "300ms", "node_info")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "perund call: call node_info: no answer within 300ms")
	require.Empty(t, r.stdout)
	require.Less(t, time.Since(start), 5*time.Second)
	require.True(t, websocket.IsCloseError(f.nextClose(t), websocket.CloseNormalClosure), "the client sent close 1000")
}

// TestCallConnectionClosed: a node that closes the connection during a
// call: exit code 1 naming the close code and reason.
func TestCallConnectionClosed(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t, func(ws *websocket.Conn, req map[string]any) {
		if answerDiscover(t, ws, req, `{"methods":[{"name":"channel_list","x-timeout":{"class":"quick","seconds":30}}]}`) {
			return
		}
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"), time.Now().Add(time.Second))
	})
	r := runIn(t, nil, "call", "-url", f.url, "channel_list")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "perund call: call channel_list: the node closed the connection (1001 going away: server shutting down)")
}

// TestCallTimeoutFromDocument: without -timeout the call waits for the
// x-timeout of its method in the node's rpc_discover plus the margin; with
// -timeout rpc_discover is not called. A document that cannot say the
// timeout is an error naming -timeout.
func TestCallTimeoutFromDocument(t *testing.T) {
	t.Parallel()
	methods := make(chan string, 10)
	f := newFakeNode(t, func(ws *websocket.Conn, req map[string]any) {
		methods <- req["method"].(string)
		answerDiscover(t, ws, req, `{"methods":[{"name":"slow","x-timeout":{"class":"peer","seconds":1}},{"name":"odd","x-timeout":{"class":"quick"}}]}`)
	})
	start := time.Now()
	r := runIn(t, nil, "call", "-url", f.url, "slow")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "perund call: call slow: no answer within 6s")
	require.Greater(t, time.Since(start), 6*time.Second)
	require.Less(t, time.Since(start), 20*time.Second)
	require.Equal(t, "rpc_discover", <-methods)
	require.Equal(t, "slow", <-methods)

	r = runIn(t, nil, "call", "-url", f.url, "-timeout", "300ms", "slow")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "perund call: call slow: no answer within 300ms")
	require.Equal(t, "slow", <-methods, "-timeout: no rpc_discover")

	r = runIn(t, nil, "call", "-url", f.url, "odd")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, `perund call: read the timeout of odd from the node's rpc_discover (-timeout sets it instead): the node's rpc_discover gives odd the x-timeout {"class":"quick"}, not {"seconds": N}`)
	require.Equal(t, "rpc_discover", <-methods)
	require.Empty(t, methods, "odd not called")

	// A node that does not answer rpc_discover: its error object, and the way out.
	g := newFakeNode(t, func(ws *websocket.Conn, req map[string]any) {
		id, _ := json.Marshal(req["id"])
		assert.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","error":{"code":-32601,"message":"method not found"},"id":`+string(id)+`}`)))
	})
	r = runIn(t, nil, "call", "-url", g.url, "node_info")
	require.Equal(t, 1, r.code)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "perund call: read the timeout of node_info from the node's rpc_discover (-timeout sets it instead):\n{\n  \"code\": -32601")
}

// TestCallAnswers: the result is printed indented on stdout whatever
// notifications and stray answers come first; an error answer is printed
// as JSON on stderr; the request carries the params as given.
func TestCallAnswers(t *testing.T) {
	t.Parallel()
	reqs := make(chan map[string]any, 10)
	f := newFakeNode(t, func(ws *websocket.Conn, req map[string]any) {
		if answerDiscover(t, ws, req, `{"methods":[{"name":"ok","x-timeout":{"class":"quick","seconds":30}}]}`) {
			return
		}
		reqs <- req
		id, _ := json.Marshal(req["id"])
		frames := []string{
			`{"jsonrpc":"2.0","method":"perun_subscription","params":{"subscription":"0x1","result":{}}}`,
			`{"jsonrpc":"2.0","result":"not yours","id":12345}`,
			`not JSON`,
		}
		if req["method"] == "fail" {
			frames = append(frames, `{"jsonrpc":"2.0","error":{"code":1007,"message":"insufficient funds <ETH>","data":{"available":"1"}},"id":`+string(id)+`}`)
		} else {
			frames = append(frames, `{"jsonrpc":"2.0","result":{"b":[1,2],"a":"x"},"id":`+string(id)+`}`)
		}
		for _, fr := range frames {
			assert.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(fr)))
		}
	})
	r := runIn(t, nil, "call", "-url", f.url, "ok", "balance.mine=5", "accept=true")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "{\n  \"b\": [\n    1,\n    2\n  ],\n  \"a\": \"x\"\n}\n", r.stdout, "the node's key order kept, indented")
	req := <-reqs
	require.Equal(t, map[string]any{"balance": map[string]any{"mine": "5"}, "accept": true}, req["params"])
	require.Equal(t, "2.0", req["jsonrpc"])

	r = runIn(t, nil, "call", "-url", f.url, "fail")
	require.Equal(t, 1, r.code)
	require.Empty(t, r.stdout)
	require.JSONEq(t, `{"code":1007,"message":"insufficient funds <ETH>","data":{"available":"1"}}`, r.stderr)
	require.Contains(t, r.stderr, "<ETH>", "no HTML escaping")
	req = <-reqs
	_, has := req["params"]
	require.False(t, has, "no params: none sent")
}

// TestWatchInterrupted: watch prints each notification as one JSON line
// with its topic (also one that arrives before the last subscription is
// answered); when its context ends (SIGINT in perund) it sends a close
// frame, the node answers it and watch exits 0.
func TestWatchInterrupted(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t, func(ws *websocket.Conn, req map[string]any) {
		id, _ := json.Marshal(req["id"])
		topic := req["params"].([]any)[0].(string)
		note := `{"jsonrpc":"2.0","method":"perun_subscription","params":{"subscription":"0x` + topic + `","result":{"n":"<` + topic + `>"}}}`
		assert.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(note)))
		assert.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","result":"0x`+topic+`","id":`+string(id)+`}`)))
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"watch", "-url", f.url, "channels", "updates"}, testEnv(nil, &out, &errOut))
	}()
	require.Eventually(t, func() bool { return strings.Count(out.String(), "\n") == 2 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, `{"topic":"channels","subscription":"0xchannels","result":{"n":"<channels>"}}`+"\n"+
		`{"topic":"updates","subscription":"0xupdates","result":{"n":"<updates>"}}`+"\n", out.String())
	require.Equal(t, "perund watch: watching channels (subscription 0xchannels)\nperund watch: watching updates (subscription 0xupdates)\n", errOut.String())
	cancel()
	select {
	case code := <-done:
		require.Equal(t, 0, code, errOut.String())
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end")
	}
	require.True(t, websocket.IsCloseError(f.nextClose(t), websocket.CloseNormalClosure), "watch sent close 1000")
}
