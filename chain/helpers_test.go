package chain

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/perun-network/perun-eth-backend/bindings/peruntoken"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/internal/leaktest"
)

// TestMain fails the package's tests if they leave goroutines behind (the
// ignored ones belong to libraries, see internal/leaktest).
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// newTestChain starts an embedded chain with fast empty blocks, funding
// alloc, and closes it when t ends.
func newTestChain(t *testing.T, alloc ...common.Address) *Embedded {
	t.Helper()
	m := map[common.Address]*big.Int{}
	for _, a := range alloc {
		m[a] = new(big.Int).Mul(Ether, big.NewInt(10))
	}
	e, err := NewEmbedded(EmbeddedOptions{Alloc: m, BlockInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	return e
}

// newKey returns a fresh key and its address.
func newKey(t *testing.T) (*ecdsa.PrivateKey, common.Address) {
	t.Helper()
	k, err := crypto.GenerateKey()
	require.NoError(t, err)
	return k, crypto.PubkeyToAddress(k.PublicKey)
}

// serveWS serves the embedded chain's JSON-RPC API (the one its in-process
// client uses, with eth_subscribe) over WebSocket on a free loopback port,
// as a remote node would; it returns the endpoint's host:port. The server
// stops when t ends (connections it still serves end with the chain).
func serveWS(t *testing.T, e *Embedded) string {
	t.Helper()
	h, err := e.stack.RPCHandler()
	require.NoError(t, err)
	srv := httptest.NewServer(h.WebsocketHandler([]string{"*"}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// tcpProxy forwards loopback TCP connections to a target. Cut drops every
// connection and refuses new ones (accepted and closed at once, as a
// restarting node's port would) until Restore.
type tcpProxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	cut     bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
	served  atomic.Int64 // connections forwarded to the target
	refused atomic.Int64 // connections refused while cut
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// url is the proxy's ws:// URL.
func (p *tcpProxy) url() string { return "ws://" + p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refused := p.cut
		p.mu.Unlock()
		if refused {
			p.refused.Add(1)
			down.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		if p.cut { // cut while dialling
			p.mu.Unlock()
			down.Close()
			up.Close()
			continue
		}
		p.conns[down], p.conns[up] = struct{}{}, struct{}{}
		p.served.Add(1)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(down, up)
		go p.pipe(up, down)
	}
}

func (p *tcpProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Cut drops all connections and refuses new ones.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore accepts connections again.
func (p *tcpProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

// deployTestToken deploys perun's test token on e, giving each holder
// amount, paid by the faucet.
func deployTestToken(ctx context.Context, t *testing.T, e *Embedded, holders []common.Address, amount *big.Int) common.Address {
	t.Helper()
	id, err := e.ChainID(ctx)
	require.NoError(t, err)
	cb, dep := DeployerBackend(e, id, e.Faucet())
	token, err := DeployToken(ctx, cb, dep, holders, amount)
	require.NoError(t, err)
	return token
}

// transferToken sends amount of token from key's account to `to` and waits
// until it is mined; it returns the receipt.
func transferToken(ctx context.Context, t *testing.T, e *Embedded, key *ecdsa.PrivateKey, token, to common.Address, amount *big.Int) *types.Receipt {
	t.Helper()
	tok, err := peruntoken.NewPeruntoken(token, e)
	require.NoError(t, err)
	opts, err := bind.NewKeyedTransactorWithChainID(key, big.NewInt(EmbeddedChainID))
	require.NoError(t, err)
	opts.Context = ctx
	tx, err := tok.Transfer(opts, to, amount)
	require.NoError(t, err)
	r, err := bind.WaitMinedHash(ctx, e, tx.Hash())
	require.NoError(t, err)
	require.Equal(t, types.ReceiptStatusSuccessful, r.Status)
	require.NotEmpty(t, r.Logs, "a transfer logs a Transfer event")
	return r
}

// recvLog waits for the next log on ch, failing after d.
func recvLog(t *testing.T, ch <-chan types.Log, d time.Duration) types.Log {
	t.Helper()
	select {
	case l := <-ch:
		return l
	case <-time.After(d):
		t.Fatalf("no log within %v", d)
		return types.Log{}
	}
}

// errBefore waits for the error that ends sub, failing after d.
func errBefore(t *testing.T, errc <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err, ok := <-errc:
		if !ok {
			return errors.New("closed without an error")
		}
		return err
	case <-time.After(d):
		t.Fatalf("subscription did not end within %v", d)
		return nil
	}
}

// recv returns the next value of ch and whether ch was still open; the
// test fails if neither comes within d.
func recv[T any](t testing.TB, ch <-chan T, d time.Duration, what string) (T, bool) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v, ok := <-ch:
		return v, ok
	case <-timer.C:
		t.Fatalf("%s: nothing within %s", what, d)
	}
	var zero T
	return zero, false
}
