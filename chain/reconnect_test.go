package chain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/perun-network/perun-eth-backend/bindings/peruntoken"
	"github.com/stretchr/testify/require"
)

// logRecorder is a slog handler that keeps the messages logged.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// all returns the messages logged so far.
func (l *logRecorder) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

// count returns how many messages contain s.
func (l *logRecorder) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

const (
	logLost     = "WARN chain connection lost; reconnecting"
	logRestored = "INFO chain connection restored"
)

// norm makes big integers comparable by value.
func norm(v any) any {
	if b, ok := v.(*big.Int); ok {
		return b.String()
	}
	return v
}

// isDown reports whether r knows its connection to be lost.
func (r *Reconnecting) isDown() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.down
}

func TestConnectionLost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		lost bool
	}{
		{nil, false},
		{rpc.ErrClientQuit, true},
		{fmt.Errorf("subscription: %w", rpc.ErrClientQuit), true},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), true},
		{errors.New("write tcp 127.0.0.1:2->127.0.0.1:3: use of closed network connection"), true},
		{errors.New("write: broken pipe"), true},
		{errors.New("EOF"), true},
		{errors.New("websocket: close 1006 (abnormal closure): unexpected EOF"), true},
		{errors.New("read: connection reset by peer"), true},
		{errors.New("read tcp: i/o timeout"), true},
		{errors.New("execution reverted"), false},
		{errors.New("nonce too low"), false},
		{context.DeadlineExceeded, false},
		{context.Canceled, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.err), func(t *testing.T) {
			require.Equal(t, tc.lost, connectionLost(tc.err))
		})
	}
}

// Dial and DialReconnecting reach a WebSocket endpoint, and name the URL
// when they cannot.
func TestDial(t *testing.T) {
	t.Parallel()
	e := newTestChain(t)
	ws := "ws://" + serveWS(t, e)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := "ws://" + ln.Addr().String()
	require.NoError(t, ln.Close())

	tests := []struct {
		name, url string
		wantErr   string // empty: the dial succeeds
	}{
		{"websocket endpoint", ws, ""},
		{"nothing listening", refused, "dial chain " + refused},
		{"unknown scheme", "foo://127.0.0.1:1", "dial chain foo://127.0.0.1:1"},
		{"a provider's key in the path", refused + "/v3/s3cret", "dial chain " + refused + "/…"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := Dial(ctx, tc.url)
			r, rerr := DialReconnecting(ctx, tc.url, slog.New(&logRecorder{}))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.NotContains(t, err.Error(), "s3cret")
				require.Nil(t, c)
				require.ErrorContains(t, rerr, tc.wantErr)
				require.Nil(t, r)
				return
			}
			require.NoError(t, err)
			defer c.Close()
			id, err := c.ChainID(ctx)
			require.NoError(t, err)
			require.Equal(t, int64(EmbeddedChainID), id.Int64())
			require.NoError(t, rerr)
			defer r.Close()
			id, err = r.ChainID(ctx)
			require.NoError(t, err)
			require.Equal(t, int64(EmbeddedChainID), id.Int64())
		})
	}
}

// TestReconnecting puts the reconnecting client in front of a real chain
// (the embedded one served over WebSocket) through a proxy the test cuts:
// every call is answered as the chain answers it; a cut ends subscriptions
// with an error, marks the connection down and fails calls at once; the
// client dials again once the endpoint is back, and a subscription made
// again (as the node's resilient subscriptions do) delivers new events.
// (The node's health check is such a call: HeaderByNumber.)
func TestReconnecting(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	holderKey, holder := newKey(t)
	_, other := newKey(t)
	e := newTestChain(t, holder)
	p := newTCPProxy(t, serveWS(t, e))
	token := deployTestToken(ctx, t, e, []common.Address{holder}, big.NewInt(1000))
	logs := &logRecorder{}
	r, err := DialReconnecting(ctx, p.url(), slog.New(logs))
	require.NoError(t, err)
	defer r.Close()
	require.Equal(t, int64(1), p.served.Load())

	// Every call goes to the chain and answers as the chain does.
	receipt := transferToken(ctx, t, e, holderKey, token, other, big.NewInt(1))
	tokABI, err := abi.JSON(strings.NewReader(peruntoken.PeruntokenMetaData.ABI))
	require.NoError(t, err)
	balanceOfOther, err := tokABI.Pack("balanceOf", other)
	require.NoError(t, err)
	calls := []struct {
		name string
		call func(t *testing.T, ctx context.Context) (got, want any, err error)
	}{
		{"ChainID", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.ChainID(ctx)
			return v, big.NewInt(EmbeddedChainID), err
		}},
		{"BalanceAt", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.BalanceAt(ctx, holder, receipt.BlockNumber)
			w, _ := e.BalanceAt(ctx, holder, receipt.BlockNumber)
			return v, w, err
		}},
		{"CodeAt", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.CodeAt(ctx, token, nil)
			w, _ := e.CodeAt(ctx, token, nil)
			require.NotEmpty(t, w)
			return v, w, err
		}},
		{"PendingCodeAt", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.PendingCodeAt(ctx, token)
			w, _ := e.CodeAt(ctx, token, nil)
			return v, w, err
		}},
		{"CallContract", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.CallContract(ctx, ethereum.CallMsg{To: &token, Data: balanceOfOther}, receipt.BlockNumber)
			return new(big.Int).SetBytes(v), big.NewInt(1), err
		}},
		{"TokenBalance", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := TokenBalance(ctx, r, token, holder)
			w, werr := TokenBalance(ctx, e, token, holder)
			require.NoError(t, werr)
			return v, w, err
		}},
		{"HeaderByNumber", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.HeaderByNumber(ctx, receipt.BlockNumber)
			if err != nil {
				return nil, nil, err
			}
			return v.Hash(), receipt.BlockHash, nil
		}},
		{"HeaderByHash", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.HeaderByHash(ctx, receipt.BlockHash)
			if err != nil {
				return nil, nil, err
			}
			return v.Number, receipt.BlockNumber, nil
		}},
		{"BlockByHash", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.BlockByHash(ctx, receipt.BlockHash)
			if err != nil {
				return nil, nil, err
			}
			return v.Transactions()[receipt.TransactionIndex].Hash(), receipt.TxHash, nil
		}},
		{"BlockByNumber", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.BlockByNumber(ctx, receipt.BlockNumber)
			if err != nil {
				return nil, nil, err
			}
			return v.Hash(), receipt.BlockHash, nil
		}},
		{"TransactionCount", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.TransactionCount(ctx, receipt.BlockHash)
			w, _ := e.TransactionCount(ctx, receipt.BlockHash)
			require.NotZero(t, w)
			return v, w, err
		}},
		{"TransactionInBlock", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.TransactionInBlock(ctx, receipt.BlockHash, receipt.TransactionIndex)
			if err != nil {
				return nil, nil, err
			}
			return v.Hash(), receipt.TxHash, nil
		}},
		{"TransactionByHash", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, pending, err := r.TransactionByHash(ctx, receipt.TxHash)
			if err != nil {
				return nil, nil, err
			}
			return fmt.Sprint(v.Hash(), pending), fmt.Sprint(receipt.TxHash, false), nil
		}},
		{"TransactionReceipt", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.TransactionReceipt(ctx, receipt.TxHash)
			if err != nil {
				return nil, nil, err
			}
			return fmt.Sprint(v.BlockHash, v.Status, len(v.Logs)), fmt.Sprint(receipt.BlockHash, receipt.Status, len(receipt.Logs)), nil
		}},
		{"PendingNonceAt", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.PendingNonceAt(ctx, holder)
			w, _ := e.PendingNonceAt(ctx, holder)
			require.NotZero(t, w)
			return v, w, err
		}},
		{"SuggestGasPrice", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.SuggestGasPrice(ctx)
			w, _ := e.SuggestGasPrice(ctx)
			return v, w, err
		}},
		{"SuggestGasTipCap", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.SuggestGasTipCap(ctx)
			w, _ := e.SuggestGasTipCap(ctx)
			return v, w, err
		}},
		{"EstimateGas", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.EstimateGas(ctx, ethereum.CallMsg{From: holder, To: &other, Value: big.NewInt(1)})
			return v, params.TxGas, err
		}},
		{"FilterLogs", func(t *testing.T, ctx context.Context) (any, any, error) {
			v, err := r.FilterLogs(ctx, ethereum.FilterQuery{BlockHash: &receipt.BlockHash, Addresses: []common.Address{token}})
			if err != nil || len(v) != 1 {
				return v, nil, err
			}
			return v[0].TxHash, receipt.TxHash, nil
		}},
	}
	for _, c := range calls {
		t.Run("up/"+c.name, func(t *testing.T) {
			got, want, err := c.call(t, ctx)
			require.NoError(t, err)
			require.Equal(t, norm(want), norm(got))
		})
	}

	// A transaction sent through the client is mined; its receipt comes by
	// a receipts subscription, the next heads by a heads subscription.
	heads := make(chan *types.Header, 16)
	headSub, err := r.SubscribeNewHead(ctx, heads)
	require.NoError(t, err)
	receipts := make(chan []*types.Receipt, 16)
	rcptSub, err := r.SubscribeTransactionReceipts(ctx, &ethereum.TransactionReceiptsQuery{}, receipts)
	require.NoError(t, err)
	tip, feeCap, err := Fees(ctx, r)
	require.NoError(t, err)
	nonce, err := r.PendingNonceAt(ctx, holder)
	require.NoError(t, err)
	tx, err := types.SignNewTx(holderKey, e.Signer(), &types.DynamicFeeTx{ChainID: big.NewInt(EmbeddedChainID), Nonce: nonce,
		GasTipCap: tip, GasFeeCap: feeCap, Gas: params.TxGas, To: &other, Value: big.NewInt(7)})
	require.NoError(t, err)
	require.NoError(t, r.SendTransaction(ctx, tx))
	var mined *types.Receipt
	for mined == nil {
		select {
		case rs := <-receipts:
			for _, rc := range rs {
				if rc.TxHash == tx.Hash() {
					mined = rc
				}
			}
		case <-ctx.Done():
			t.Fatal("the receipt of a transaction sent through the client did not come")
		}
	}
	require.Equal(t, types.ReceiptStatusSuccessful, mined.Status)
	select {
	case h := <-heads:
		require.NotNil(t, h.Number)
	case <-ctx.Done():
		t.Fatal("no head")
	}
	headSub.Unsubscribe()
	rcptSub.Unsubscribe()
	_, open := recv(t, headSub.Err(), 10*time.Second, "Err closed")
	require.False(t, open, "Err closes at Unsubscribe")
	require.False(t, r.isDown())
	require.Zero(t, logs.count(logLost), "ending subscriptions is no lost connection")

	// A log subscription delivers the logs of real transactions.
	before := make(chan types.Log, 16)
	sub, err := r.SubscribeFilterLogs(ctx, ethereum.FilterQuery{Addresses: []common.Address{token}}, before)
	require.NoError(t, err)
	rc := transferToken(ctx, t, e, holderKey, token, other, big.NewInt(2))
	require.Equal(t, rc.TxHash, recvLog(t, before, 10*time.Second).TxHash)

	// The cut: the subscription ends with an error, the connection is known
	// to be down, and calls fail at once instead of hanging.
	old := r.client()
	p.Cut()
	subErr := errBefore(t, sub.Err(), 10*time.Second)
	require.True(t, connectionLost(subErr), "%v", subErr)
	require.True(t, r.isDown())
	require.Equal(t, 1, logs.count(logLost))
	for _, c := range calls {
		t.Run("down/"+c.name, func(t *testing.T) {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			defer ccancel()
			_, _, err := c.call(t, cctx)
			require.Error(t, err)
			require.True(t, connectionLost(err), "a connection error, not a timeout: %v", err)
		})
	}
	failed, err := r.SubscribeFilterLogs(ctx, ethereum.FilterQuery{Addresses: []common.Address{token}}, make(chan types.Log))
	require.Error(t, err)
	require.True(t, connectionLost(err), "%v", err)
	require.NotNil(t, failed, "a failed subscription can still be unsubscribed")
	failed.Unsubscribe()
	require.Nil(t, failed.Err())
	require.Equal(t, 1, logs.count(logLost), "one loss is reported once")
	require.Zero(t, logs.count(logRestored))
	require.Zero(t, r.Reconnects())

	// The endpoint is back: the client dials again, once.
	served := p.served.Load()
	p.Restore()
	require.Eventually(t, func() bool { return !r.isDown() }, 20*time.Second, 10*time.Millisecond, "no redial")
	require.NotSame(t, old, r.client(), "a new connection")
	for _, c := range calls {
		t.Run("again/"+c.name, func(t *testing.T) {
			got, want, err := c.call(t, ctx)
			require.NoError(t, err)
			require.Equal(t, norm(want), norm(got))
		})
	}
	// The failures while down (more than one) leave no second redial that
	// would close the new connection under its first users.
	require.Equal(t, 1, logs.count(logRestored), "one outage, one redial: %v", logs.all())
	require.Equal(t, 1, logs.count(logLost))
	require.Equal(t, served+1, p.served.Load(), "one new connection")
	require.EqualValues(t, 1, r.Reconnects(), "counted for the metrics")

	// The old subscription is over; a new one (as the node makes) delivers
	// the logs of transactions after the reconnect.
	sub.Unsubscribe()
	_, open = recv(t, sub.Err(), 10*time.Second, "Err closed")
	require.False(t, open)
	after := make(chan types.Log, 16)
	sub2, err := r.SubscribeFilterLogs(ctx, ethereum.FilterQuery{Addresses: []common.Address{token}}, after)
	require.NoError(t, err)
	defer sub2.Unsubscribe()
	rc = transferToken(ctx, t, e, holderKey, token, other, big.NewInt(3))
	require.Equal(t, rc.TxHash, recvLog(t, after, 10*time.Second).TxHash)
	require.False(t, r.isDown())
	require.Equal(t, 1, logs.count(logRestored))
	require.Equal(t, served+1, p.served.Load())
}

// After a reconnect under load (calls in flight all the time), the client
// settles on one connection at once: failures of calls that were made on
// the connection it replaced do not make it dial again, closing the new
// connection under its users.
func TestReconnectingSettlesUnderLoad(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := newTestChain(t)
	p := newTCPProxy(t, serveWS(t, e))
	logs := &logRecorder{}
	r, err := DialReconnecting(ctx, p.url(), slog.New(logs))
	require.NoError(t, err)
	defer r.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures int
	var since time.Time // failures count for calls started from then on
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				started := time.Now()
				cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := r.HeaderByNumber(cctx, nil)
				ccancel()
				if err != nil {
					// A call made on the old connection while it was cut
					// may fail late; only calls made after the settling
					// count.
					mu.Lock()
					if !since.IsZero() && !started.Before(since) {
						failures++
					}
					mu.Unlock()
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	p.Cut()
	require.Eventually(t, r.isDown, 10*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	p.Restore()
	require.Eventually(t, func() bool { return !r.isDown() }, 20*time.Second, 10*time.Millisecond)
	time.Sleep(time.Second)
	settled := p.served.Load()
	mu.Lock()
	since = time.Now()
	mu.Unlock()
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	require.Equal(t, settled, p.served.Load(), "no further redial once the endpoint is back")
	require.Zero(t, failures, "no call fails once the endpoint is back")
	require.Equal(t, 1, logs.count(logRestored), "one outage, one redial: %v", logs.all())
	require.Equal(t, 1, logs.count(logLost))
}

// Close ends the redial loop of a client whose endpoint is gone, at once
// and for good, ends its subscriptions, and calls after it fail.
func TestReconnectingClose(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newTestChain(t)
	p := newTCPProxy(t, serveWS(t, e))
	logs := &logRecorder{}
	r, err := DialReconnecting(ctx, p.url(), slog.New(logs))
	require.NoError(t, err)
	heads := make(chan *types.Header, 16)
	sub, err := r.SubscribeNewHead(ctx, heads)
	require.NoError(t, err)

	p.Cut()
	require.Error(t, errBefore(t, sub.Err(), 10*time.Second))
	require.True(t, r.isDown())
	// The loop keeps dialling the refused endpoint.
	require.Eventually(t, func() bool { return p.refused.Load() >= 3 }, 10*time.Second, 10*time.Millisecond)

	sub2, err := r.SubscribeNewHead(ctx, heads)
	require.Error(t, err)
	closed := make(chan struct{})
	go func() {
		r.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for the redial loop")
	}
	select {
	case <-r.done:
	default:
		t.Fatal("the redial loop is still running")
	}
	r.Close() // a second Close is harmless
	sub.Unsubscribe()
	sub2.Unsubscribe()

	// Back again, the endpoint sees no more dials.
	refused, served := p.refused.Load(), p.served.Load()
	p.Restore()
	_, err = r.ChainID(ctx)
	require.ErrorIs(t, err, rpc.ErrClientQuit, "calls after Close")
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, refused, p.refused.Load())
	require.Equal(t, served, p.served.Load())
	require.Zero(t, logs.count(logRestored))
}
