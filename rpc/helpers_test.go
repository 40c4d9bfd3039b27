package rpc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/config"
	"github.com/perund/perund/contacts"
	"github.com/perund/perund/node"
	"github.com/perund/perund/perunlog"
	"github.com/perund/perund/rpc"
)

func TestMain(m *testing.M) {
	perunlog.Install(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}

const (
	keyAlice = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
	keyBob   = "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
)

func eth(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), chain.Ether) }

type fixture struct {
	chain      *chain.Embedded
	node       *node.Node
	url        string
	alice, bob common.Address
}

// newFixture starts an embedded chain, one node holding alice and bob (each
// with 100 ETH, each in the other's contacts) and the API server.
func newFixture(t *testing.T, flags map[string]any) *fixture {
	t.Helper()
	ka, _ := crypto.HexToECDSA(keyAlice)
	kb, _ := crypto.HexToECDSA(keyBob)
	f := &fixture{alice: crypto.PubkeyToAddress(ka.PublicKey), bob: crypto.PubkeyToAddress(kb.PublicKey)}
	e, err := chain.NewEmbedded(map[common.Address]*big.Int{f.alice: eth(100), f.bob: eth(100)}, 100*time.Millisecond)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	f.chain = e
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, _ := e.ChainID(ctx)
	cb, dep := chain.DeployerBackend(e, id, e.Faucet())
	c, err := chain.SetupContracts(ctx, cb, config.ModeDeploy, chain.Contracts{}, dep)
	require.NoError(t, err)
	fl := map[string]any{"dataDir": t.TempDir(), "keystore.lightKdf": true, "channel.responseTimeout": "5s", "allowAccountCreation": true}
	for k, v := range flags {
		fl[k] = v
	}
	cfg, err := config.Load(config.Sources{Flags: fl})
	require.NoError(t, err)
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := node.New(ctx, node.Options{Config: cfg, Chain: e, Contracts: c, Logger: lg,
		Fund: func(ctx context.Context, a common.Address) error { return e.Fund(ctx, a, eth(100)) }})
	require.NoError(t, err)
	f.node = n
	_, err = n.Keys().Import(ka, "alice")
	require.NoError(t, err)
	_, err = n.Keys().Import(kb, "bob")
	require.NoError(t, err)
	sa, err := n.OpenSession(ctx, f.alice, "alice", false)
	require.NoError(t, err)
	sb, err := n.OpenSession(ctx, f.bob, "bob", false)
	require.NoError(t, err)
	_, err = sa.AddContact(contacts.Contact{Alias: "bob", Address: f.bob, CommAddress: sb.CommAddress()})
	require.NoError(t, err)
	_, err = sb.AddContact(contacts.Contact{Alias: "alice", Address: f.alice, CommAddress: sa.CommAddress()})
	require.NoError(t, err)

	srv := rpc.NewServer(n, cfg.RPC, lg, nil)
	hs := httptest.NewServer(srv.Handler())
	f.url = "ws" + strings.TrimPrefix(hs.URL, "http") + "/rpc"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
		require.NoError(t, n.Close(ctx))
	})
	return f
}

// client is a minimal JSON-RPC client over a real WebSocket.
type client struct {
	t      *testing.T
	ws     *websocket.Conn
	wmu    sync.Mutex
	nextID atomic.Int64
	mu     sync.Mutex
	wait   map[string]chan map[string]any
	raw    chan []byte // frames that are not responses to call()
	// readErr is the error that ended the connection (valid once raw is closed).
	readErr error
	notes   chan map[string]any
}

func dial(t *testing.T, url string) *client {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	require.NoError(t, err)
	c := &client{t: t, ws: ws, wait: map[string]chan map[string]any{}, raw: make(chan []byte, 100), notes: make(chan map[string]any, 10000)}
	go c.read()
	t.Cleanup(func() { ws.Close() })
	return c
}

func (c *client) read() {
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.readErr = err
			close(c.raw)
			return
		}
		var m map[string]any
		if json.Unmarshal(data, &m) == nil {
			if m["method"] == "perun_subscription" {
				c.notes <- m
				continue
			}
			if id, ok := m["id"].(string); ok && strings.HasPrefix(id, "c-") {
				c.mu.Lock()
				ch := c.wait[id]
				c.mu.Unlock()
				if ch != nil {
					ch <- m
					continue
				}
			}
		}
		c.raw <- data
	}
}

func (c *client) send(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	require.NoError(c.t, c.ws.WriteMessage(websocket.TextMessage, []byte(s)))
}

// next returns the next frame that is not a call() response or notification.
func (c *client) next() []byte {
	select {
	case d, ok := <-c.raw:
		require.True(c.t, ok, "connection closed")
		return d
	case <-time.After(10 * time.Second):
		c.t.Fatal("no message within 10s")
		return nil
	}
}

// call sends a request and returns its response object.
func (c *client) call(method string, params any) map[string]any {
	id := fmt.Sprintf("c-%d", c.nextID.Add(1))
	ch := make(chan map[string]any, 1)
	c.mu.Lock()
	c.wait[id] = ch
	c.mu.Unlock()
	req := map[string]any{"jsonrpc": "2.0", "id": id, "method": method}
	if params != nil {
		req["params"] = params
	}
	b, _ := json.Marshal(req)
	c.send(string(b))
	select {
	case m := <-ch:
		return m
	case <-time.After(2 * time.Minute):
		c.t.Fatalf("no answer to %s", method)
		return nil
	}
}

// ok calls and requires a result, decoded into out if given.
func (c *client) ok(method string, params any, out any) {
	c.t.Helper()
	m := c.call(method, params)
	require.Nil(c.t, m["error"], "%s: %v", method, m["error"])
	if out != nil {
		b, _ := json.Marshal(m["result"])
		require.NoError(c.t, json.Unmarshal(b, out))
	}
}

// fail calls and requires an error with code.
func (c *client) fail(method string, params any, code int) map[string]any {
	c.t.Helper()
	m := c.call(method, params)
	e, ok := m["error"].(map[string]any)
	require.True(c.t, ok, "%s: want error %d, got %v", method, code, m["result"])
	require.EqualValues(c.t, code, e["code"], "%s: %v", method, e)
	return e
}

// note waits for a notification matching pred.
func (c *client) note(pred func(map[string]any) bool) map[string]any {
	c.t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case n := <-c.notes:
			r := n["params"].(map[string]any)["result"].(map[string]any)
			if pred(r) {
				return r
			}
		case <-deadline:
			c.t.Fatal("notification did not arrive")
			return nil
		}
	}
}

func bytesReader(b []byte) io.Reader { return strings.NewReader(string(b)) }
