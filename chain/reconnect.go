package chain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/rpc"
)

// Reconnecting is a chain backend over a WebSocket connection that is
// dialled again when it breaks. Calls made while the chain is away fail
// (callers retry or report a chain error); subscriptions end with an error,
// and the node's own subscriptions subscribe again (see node's resilient
// adjudicator subscription).
type Reconnecting struct {
	url    string
	log    *slog.Logger
	mu     sync.RWMutex
	c      *ethclient.Client
	down   bool
	wake   chan struct{}
	closed chan struct{}
	done   chan struct{}
	// restored counts the connections made after a loss.
	restored atomic.Uint64
}

// Reconnects reports how many times the connection was lost and made
// again.
func (r *Reconnecting) Reconnects() uint64 { return r.restored.Load() }

// DialReconnecting connects to url and keeps the connection up.
func DialReconnecting(ctx context.Context, url string, log *slog.Logger) (*Reconnecting, error) {
	c, err := Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	r := &Reconnecting{url: url, log: log, c: c, wake: make(chan struct{}, 1), closed: make(chan struct{}), done: make(chan struct{})}
	go r.redialLoop()
	return r, nil
}

// Close ends the connection for good.
func (r *Reconnecting) Close() {
	select {
	case <-r.closed:
		return
	default:
	}
	close(r.closed)
	<-r.done
	r.mu.Lock()
	r.c.Close()
	r.mu.Unlock()
}

func (r *Reconnecting) client() *ethclient.Client {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.c
}

// connectionLost reports whether err means the connection is gone.
func connectionLost(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, rpc.ErrClientQuit) {
		return true
	}
	s := err.Error()
	for _, m := range []string{"connection refused", "use of closed network connection", "broken pipe",
		"EOF", "websocket: close", "connection reset", "client is closed", "i/o timeout"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// check reports a lost connection of c, the client a call used, and has it
// dialled again. A failure of a client that was already replaced (a call
// in flight when the redial closed it) is not reported: it would tear
// down the connection just made.
func (r *Reconnecting) check(c *ethclient.Client, err error) error {
	if connectionLost(err) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if c != r.c {
			return err
		}
		if !r.down {
			r.down = true
			r.log.Warn("chain connection lost; reconnecting", "url", RedactURL(r.url), "err", err)
		}
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	return err
}

func (r *Reconnecting) redialLoop() {
	defer close(r.done)
	for {
		select {
		case <-r.closed:
			return
		case <-r.wake:
		}
		backoff := 200 * time.Millisecond
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := ethclient.DialContext(ctx, r.url)
			if err == nil {
				_, err = c.ChainID(ctx)
				if err != nil {
					c.Close()
				}
			}
			cancel()
			if err == nil {
				r.mu.Lock()
				old := r.c
				r.c, r.down = c, false
				// A wake left by another failure of the old connection
				// would dial again at once.
				select {
				case <-r.wake:
				default:
				}
				r.mu.Unlock()
				old.Close()
				r.restored.Add(1)
				r.log.Info("chain connection restored", "url", RedactURL(r.url))
				break
			}
			select {
			case <-r.closed:
				return
			case <-time.After(backoff):
			}
			if backoff < 5*time.Second {
				backoff *= 2
			}
		}
	}
}

// subscription forwards a subscription's error and triggers a redial.
type subscription struct {
	inner ethereum.Subscription
	errc  chan error
	once  sync.Once
	quit  chan struct{}
}

func (r *Reconnecting) wrap(c *ethclient.Client, s ethereum.Subscription, err error) (ethereum.Subscription, error) {
	if err != nil {
		// perun-eth-backend calls Unsubscribe on the subscription it got
		// even when subscribing failed: hand it one that is already over.
		return failedSubscription{}, r.check(c, err)
	}
	w := &subscription{inner: s, errc: make(chan error, 1), quit: make(chan struct{})}
	go func() {
		select {
		case err, ok := <-s.Err():
			if ok && err != nil {
				r.check(c, fmt.Errorf("subscription: %w", err))
				if !connectionLost(err) {
					r.check(c, rpc.ErrClientQuit)
				}
				w.errc <- err
			}
			close(w.errc)
		case <-w.quit:
			close(w.errc)
		}
	}()
	return w, nil
}

// failedSubscription is the subscription returned with an error.
type failedSubscription struct{}

func (failedSubscription) Unsubscribe()      {}
func (failedSubscription) Err() <-chan error { return nil }

func (s *subscription) Unsubscribe() {
	s.once.Do(func() {
		s.inner.Unsubscribe()
		close(s.quit)
	})
}

func (s *subscription) Err() <-chan error { return s.errc }

// The methods of chain.Backend, delegated to the current connection.

// ChainID returns the chain id.
func (r *Reconnecting) ChainID(ctx context.Context) (*big.Int, error) {
	c := r.client()
	v, err := c.ChainID(ctx)
	return v, r.check(c, err)
}

// BalanceAt returns a balance.
func (r *Reconnecting) BalanceAt(ctx context.Context, a common.Address, n *big.Int) (*big.Int, error) {
	c := r.client()
	v, err := c.BalanceAt(ctx, a, n)
	return v, r.check(c, err)
}

// CodeAt returns contract code.
func (r *Reconnecting) CodeAt(ctx context.Context, a common.Address, n *big.Int) ([]byte, error) {
	c := r.client()
	v, err := c.CodeAt(ctx, a, n)
	return v, r.check(c, err)
}

// CallContract executes a call.
func (r *Reconnecting) CallContract(ctx context.Context, m ethereum.CallMsg, n *big.Int) ([]byte, error) {
	c := r.client()
	v, err := c.CallContract(ctx, m, n)
	return v, r.check(c, err)
}

// HeaderByNumber returns a header.
func (r *Reconnecting) HeaderByNumber(ctx context.Context, n *big.Int) (*types.Header, error) {
	c := r.client()
	v, err := c.HeaderByNumber(ctx, n)
	return v, r.check(c, err)
}

// HeaderByHash returns a header.
func (r *Reconnecting) HeaderByHash(ctx context.Context, h common.Hash) (*types.Header, error) {
	c := r.client()
	v, err := c.HeaderByHash(ctx, h)
	return v, r.check(c, err)
}

// BlockByHash returns a block.
func (r *Reconnecting) BlockByHash(ctx context.Context, h common.Hash) (*types.Block, error) {
	c := r.client()
	v, err := c.BlockByHash(ctx, h)
	return v, r.check(c, err)
}

// BlockByNumber returns a block.
func (r *Reconnecting) BlockByNumber(ctx context.Context, n *big.Int) (*types.Block, error) {
	c := r.client()
	v, err := c.BlockByNumber(ctx, n)
	return v, r.check(c, err)
}

// TransactionCount returns a block's transaction count.
func (r *Reconnecting) TransactionCount(ctx context.Context, h common.Hash) (uint, error) {
	c := r.client()
	v, err := c.TransactionCount(ctx, h)
	return v, r.check(c, err)
}

// TransactionInBlock returns a transaction of a block.
func (r *Reconnecting) TransactionInBlock(ctx context.Context, h common.Hash, i uint) (*types.Transaction, error) {
	c := r.client()
	v, err := c.TransactionInBlock(ctx, h, i)
	return v, r.check(c, err)
}

// TransactionByHash returns a transaction.
func (r *Reconnecting) TransactionByHash(ctx context.Context, h common.Hash) (*types.Transaction, bool, error) {
	c := r.client()
	v, p, err := c.TransactionByHash(ctx, h)
	return v, p, r.check(c, err)
}

// TransactionReceipt returns a receipt.
func (r *Reconnecting) TransactionReceipt(ctx context.Context, h common.Hash) (*types.Receipt, error) {
	c := r.client()
	v, err := c.TransactionReceipt(ctx, h)
	return v, r.check(c, err)
}

// PendingCodeAt returns pending code.
func (r *Reconnecting) PendingCodeAt(ctx context.Context, a common.Address) ([]byte, error) {
	c := r.client()
	v, err := c.PendingCodeAt(ctx, a)
	return v, r.check(c, err)
}

// PendingNonceAt returns the pending nonce.
func (r *Reconnecting) PendingNonceAt(ctx context.Context, a common.Address) (uint64, error) {
	c := r.client()
	v, err := c.PendingNonceAt(ctx, a)
	return v, r.check(c, err)
}

// SuggestGasPrice suggests a gas price.
func (r *Reconnecting) SuggestGasPrice(ctx context.Context) (*big.Int, error) {
	c := r.client()
	v, err := c.SuggestGasPrice(ctx)
	return v, r.check(c, err)
}

// SuggestGasTipCap suggests a tip.
func (r *Reconnecting) SuggestGasTipCap(ctx context.Context) (*big.Int, error) {
	c := r.client()
	v, err := c.SuggestGasTipCap(ctx)
	return v, r.check(c, err)
}

// EstimateGas estimates gas.
func (r *Reconnecting) EstimateGas(ctx context.Context, m ethereum.CallMsg) (uint64, error) {
	c := r.client()
	v, err := c.EstimateGas(ctx, m)
	return v, r.check(c, err)
}

// SendTransaction sends a transaction.
func (r *Reconnecting) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	c := r.client()
	return r.check(c, c.SendTransaction(ctx, tx))
}

// FilterLogs filters logs.
func (r *Reconnecting) FilterLogs(ctx context.Context, q ethereum.FilterQuery) ([]types.Log, error) {
	c := r.client()
	v, err := c.FilterLogs(ctx, q)
	return v, r.check(c, err)
}

// SubscribeFilterLogs subscribes to logs.
func (r *Reconnecting) SubscribeFilterLogs(ctx context.Context, q ethereum.FilterQuery, ch chan<- types.Log) (ethereum.Subscription, error) {
	c := r.client()
	s, err := relay(func(in chan<- types.Log) (ethereum.Subscription, error) { return c.SubscribeFilterLogs(ctx, q, in) }, ch)
	return r.wrap(c, s, err)
}

// SubscribeNewHead subscribes to new heads.
func (r *Reconnecting) SubscribeNewHead(ctx context.Context, ch chan<- *types.Header) (ethereum.Subscription, error) {
	c := r.client()
	s, err := relay(func(in chan<- *types.Header) (ethereum.Subscription, error) { return c.SubscribeNewHead(ctx, in) }, ch)
	return r.wrap(c, s, err)
}

// SubscribeTransactionReceipts subscribes to the receipts of transactions.
func (r *Reconnecting) SubscribeTransactionReceipts(ctx context.Context, q *ethereum.TransactionReceiptsQuery, ch chan<- []*types.Receipt) (ethereum.Subscription, error) {
	c := r.client()
	s, err := relay(func(in chan<- []*types.Receipt) (ethereum.Subscription, error) {
		return c.SubscribeTransactionReceipts(ctx, q, in)
	}, ch)
	return r.wrap(c, s, err)
}

var _ Backend = (*Reconnecting)(nil)
