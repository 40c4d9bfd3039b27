package rpc_test

import (
	"context"
	"io"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/internal/leaktest"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/internal/perundtest/serve"
	"github.com/perund/perund/node"
	"github.com/perund/perund/perunlog"
	"github.com/perund/perund/rpc"
	"github.com/perund/perund/rpc/rpctest"
)

// TestMain fails the package's tests if goroutines are left once they have
// all finished. It ignores only third-party goroutines that perund cannot
// end, each named in internal/leaktest with the reason.
func TestMain(m *testing.M) {
	perunlog.Install(slog.New(slog.NewTextHandler(io.Discard, nil)))
	leaktest.VerifyTestMain(m)
}

const (
	keyAlice = perundtest.KeyAlice
	keyBob   = perundtest.KeyBob
)

func eth(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), chain.Ether) }

type fixture struct {
	chain      *chain.Embedded
	node       *node.Node
	url        string
	alice, bob common.Address
	token      common.Address
	srv        *rpc.Server
}

// newFixture starts an embedded chain, one node holding alice and bob (each
// with 100 ETH, each in the other's contacts) and the API server.
func newFixture(t *testing.T, flags map[string]any) *fixture {
	t.Helper()
	return newFixtureWith(t, flags, nil)
}

// newFixtureWith is newFixture with a hook that changes the node's options.
func newFixtureWith(t *testing.T, flags map[string]any, opts func(*node.Options)) *fixture {
	t.Helper()
	return newFixtureServer(t, flags, opts, nil)
}

// newFixtureServer is newFixtureWith with a hook that changes the server
// before it serves.
func newFixtureServer(t *testing.T, flags map[string]any, opts func(*node.Options), srvHook func(*rpc.Server)) *fixture {
	t.Helper()
	ka, _ := crypto.HexToECDSA(keyAlice)
	kb, _ := crypto.HexToECDSA(keyBob)
	f := &fixture{alice: crypto.PubkeyToAddress(ka.PublicKey), bob: crypto.PubkeyToAddress(kb.PublicKey)}
	ch := perundtest.NewChain(t, perundtest.ChainOptions{
		Alloc: map[common.Address]*big.Int{f.alice: eth(100), f.bob: eth(100)},
		Token: []common.Address{f.alice, f.bob}, TokenAmount: eth(1000),
	})
	f.chain, f.token = ch.Embedded, ch.Assets[0].Token
	fl := map[string]any{"channel.responseTimeout": "5s", "allowAccountCreation": true}
	for k, v := range flags {
		fl[k] = v
	}
	var o node.Options
	n := ch.Node(t, perundtest.NodeOptions{Flags: fl, Keys: map[string]string{keyAlice: "alice", keyBob: "bob"},
		Options: func(no *node.Options) {
			no.Fund = func(ctx context.Context, a common.Address) error { return ch.Fund(ctx, a, eth(100)) }
			if opts != nil {
				opts(no)
			}
			o = *no
		}})
	f.node = n
	perundtest.Introduce(t, perundtest.Login(t, n, f.alice, "alice"), "alice", perundtest.Login(t, n, f.bob, "bob"), "bob")
	f.url, f.srv = serve.API(t, n, o.Config.RPC, func(srv *rpc.Server) {
		if o.Metrics != nil {
			require.NoError(t, srv.SetMetrics(o.Metrics))
		}
		if srvHook != nil {
			srvHook(srv)
		}
	})
	return f
}

// client wraps rpctest.Client with the names the tests here use.
type client struct{ *rpctest.Client }

func dial(t *testing.T, url string) *client { return &client{rpctest.Dial(t, url)} }

func (c *client) send(s string)                                 { c.Send(s) }
func (c *client) next() []byte                                  { return c.Next() }
func (c *client) call(m string, p any) map[string]any           { return c.Call(m, p) }
func (c *client) ok(m string, p any, out any)                   { c.OK(m, p, out) }
func (c *client) fail(m string, p any, code int) map[string]any { return c.Fail(m, p, code) }
func (c *client) note(pred func(map[string]any) bool) map[string]any {
	return c.Note(time.Minute, pred)
}

// answered is what answer got: the notification it answered, or why not.
type answered struct {
	note   map[string]any
	result any
	err    error
}

// answer is the other side of a call the test makes: in a goroutine, it
// waits up to a minute for c's notification that pred matches, then calls
// method with the params made of it. Nothing in it fails the test: the
// test goroutine takes the outcome with awaitAnswer.
func answer(c *client, pred func(map[string]any) bool, method string, params func(note map[string]any) any) <-chan answered {
	res := make(chan answered, 1)
	go func() {
		n, err := c.TryNote(time.Minute, pred)
		var r any
		if err == nil {
			r, err = c.TryCall(method, params(n), 5*time.Minute)
		}
		res <- answered{note: n, result: r, err: err}
	}()
	return res
}

// awaitAnswer takes what answer got and requires that it answered.
func awaitAnswer(t *testing.T, ch <-chan answered) answered {
	t.Helper()
	a := perundtest.Recv(t, ch, 7*time.Minute, "the answering side")
	require.NoError(t, a.err)
	return a
}

// respond answers the notification's proposal or update (by its id) with
// accept.
func respond(method string) func(map[string]any) any {
	key := "updateId"
	if method == "proposal_respond" {
		key = "proposalId"
	}
	return func(n map[string]any) any { return map[string]any{key: n[key], "accept": true} }
}

func bytesReader(b []byte) io.Reader { return strings.NewReader(string(b)) }
