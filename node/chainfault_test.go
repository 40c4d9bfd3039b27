package node_test

import (
	"context"
	"errors"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/event"
	"github.com/perun-network/perun-eth-backend/bindings/adjudicator"
	"github.com/perun-network/perun-eth-backend/bindings/assetholder"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/node"
)

// faultChain is a real chain (the env's embedded one) behind the seam
// where a node sends its transactions: it refuses, on demand, the
// transactions that call one contract method, as a node that drops the
// connection or rejects the transaction would. Everything else reaches
// the chain unchanged.
type faultChain struct {
	chain.Backend
	mu      sync.Mutex
	method  string // the contract method to refuse ("" refuses nothing)
	left    int    // how many more to refuse (negative: all)
	refused []string
	// readsDown makes the reads of the head and of balances fail, as a
	// chain that does not answer.
	readsDown atomic.Bool
	// frozenAt, unless 0, is the latest block time the node sees
	// (freezeClock).
	frozenAt atomic.Uint64
	// hold is the contract method whose next transaction is accepted
	// but held back from the chain (holdNext); held is that transaction.
	hold string
	held *types.Transaction
}

// holdNext makes the chain accept the next transaction calling method
// without mining it, as a congested chain leaves a transaction pending;
// the returned release sends it on to the chain (once it was held).
func (c *faultChain) holdNext(method string) (release func(t *testing.T)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold = method
	return func(t *testing.T) {
		t.Helper()
		c.mu.Lock()
		tx := c.held
		c.hold, c.held = "", nil
		c.mu.Unlock()
		require.NotNil(t, tx, "a %s transaction was held", method)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, c.Backend.SendTransaction(ctx, tx))
	}
}

func (c *faultChain) HeaderByNumber(ctx context.Context, n *big.Int) (*types.Header, error) {
	if c.readsDown.Load() {
		return nil, errInjected
	}
	h, err := c.Backend.HeaderByNumber(ctx, n)
	if err != nil {
		return nil, err
	}
	return c.shown(h), nil
}

// freezeClock makes the chain's clock stand still for the node: the heads
// it reads and is sent (blocks go on being mined, numbered and delivered)
// carry no time later than the head's now, so that no block timeout of
// the node (a funding period) ends until the returned thaw is called.
func (c *faultChain) freezeClock(t *testing.T) (thaw func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := c.Backend.HeaderByNumber(ctx, nil)
	require.NoError(t, err)
	c.frozenAt.Store(h.Time)
	return func() { c.frozenAt.Store(0) }
}

// shown is h as the node sees it: no later than a frozen clock.
func (c *faultChain) shown(h *types.Header) *types.Header {
	if f := c.frozenAt.Load(); f != 0 && h.Time > f {
		h = types.CopyHeader(h)
		h.Time = f
	}
	return h
}

// SubscribeNewHead relays the chain's heads as the node sees them (shown).
func (c *faultChain) SubscribeNewHead(ctx context.Context, ch chan<- *types.Header) (ethereum.Subscription, error) {
	in := make(chan *types.Header)
	sub, err := c.Backend.SubscribeNewHead(ctx, in)
	if err != nil {
		return sub, err
	}
	return event.NewSubscription(func(quit <-chan struct{}) error {
		defer sub.Unsubscribe()
		for {
			select {
			case h := <-in:
				select {
				case ch <- c.shown(h):
				case <-quit:
					return nil
				}
			case err := <-sub.Err():
				return err
			case <-quit:
				return nil
			}
		}
	}), nil
}

func (c *faultChain) BalanceAt(ctx context.Context, a common.Address, n *big.Int) (*big.Int, error) {
	if c.readsDown.Load() {
		return nil, errInjected
	}
	return c.Backend.BalanceAt(ctx, a, n)
}

// errInjected is the error of a refused transaction.
var errInjected = errors.New("connection reset by chain (injected)")

// perunABIs are the ABIs of the Perun contracts a session calls.
var perunABIs = func() []*abi.ABI {
	var out []*abi.ABI
	for _, md := range []*bind.MetaData{adjudicator.AdjudicatorMetaData, assetholder.AssetholderMetaData} {
		a, err := md.GetAbi()
		if err != nil {
			panic(err)
		}
		out = append(out, a)
	}
	return out
}()

// methodOf names the Perun contract method a transaction calls.
func methodOf(tx *types.Transaction) string {
	data := tx.Data()
	if len(data) < 4 {
		return ""
	}
	for _, a := range perunABIs {
		if m, err := a.MethodById(data[:4]); err == nil {
			return m.Name
		}
	}
	return ""
}

// failNext makes the chain refuse the next n transactions calling method
// (n < 0: every one until failNext is called again).
func (c *faultChain) failNext(method string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.method, c.left = method, n
}

// refusedCalls returns the methods of the transactions refused so far.
func (c *faultChain) refusedCalls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.refused...)
}

func (c *faultChain) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	m := methodOf(tx)
	c.mu.Lock()
	refuse := c.method != "" && m == c.method && c.left != 0
	if refuse {
		c.left--
		c.refused = append(c.refused, m)
	}
	hold := !refuse && c.hold != "" && m == c.hold && c.held == nil
	if hold {
		c.held = tx
	}
	c.mu.Unlock()
	if refuse {
		return errInjected
	}
	if hold {
		return nil
	}
	return c.Backend.SendTransaction(ctx, tx)
}

// faultPair is alice and bob, each on a node of their own on one embedded
// chain, introduced to each other; the nodes allow a challenge duration
// of 2 s, so that a funding period and a dispute pass quickly.
type faultPair struct {
	v          *env
	na, nb     *node.Node
	alice, bob *node.Session
	fa, fb     *faultChain
	// dirA and keyA start alice's node again (restartAlice).
	dirA, keyA string
}

func newFaultPair(t *testing.T) *faultPair {
	t.Helper()
	keys := freshKeys(t, 2)
	v, addrs := newEnv(t, keys...)
	p := &faultPair{v: v, fa: &faultChain{Backend: v.chain}, fb: &faultChain{Backend: v.chain}, dirA: t.TempDir(), keyA: keys[0]}
	p.na = v.nodeWith(t, p.dirA, map[string]string{keys[0]: "alice"}, testNode{chain: p.fa, flags: faultFlags})
	p.nb = v.nodeWith(t, t.TempDir(), map[string]string{keys[1]: "bob"}, testNode{chain: p.fb, flags: faultFlags})
	p.alice, p.bob = loginPair(t, p.na, p.nb, addrs)
	return p
}

// faultFlags let the pair's nodes take short challenge durations.
var faultFlags = map[string]any{"channel.minChallengeDuration": 2}

// restartAlice closes alice's node and starts it again from its data dir
// (on a chain connection without faults), with alice logged in.
func (p *faultPair) restartAlice(ctx context.Context, t *testing.T) {
	t.Helper()
	require.NoError(t, p.na.Close(ctx))
	p.na = p.v.nodeWith(t, p.dirA, map[string]string{p.keyA: "alice"}, testNode{flags: faultFlags})
	p.alice = perundtest.Login(t, p.na, p.alice.Address(), "alice")
}

// head returns the number of the chain's next block and addr's balance
// at its head (env.balanceNow).
func (p *faultPair) head(t *testing.T, addr common.Address) (uint64, *big.Int) {
	t.Helper()
	from, b := p.v.balanceNow(t, addr)
	return from, b[0]
}

// requireRefunded waits until s has the one channel that never got funded
// closed (by a dispute on its initial state) and checks that s's account
// got its deposit back: its balance is before less the gas of what it
// sent since block from, to the wei.
func (p *faultPair) requireRefunded(t *testing.T, s *node.Session, deposit *big.Int, before *big.Int, from uint64) {
	t.Helper()
	var closed []node.ChannelInfo
	require.Eventually(t, func() bool {
		closed = s.Channels(node.StateClosed)
		return len(closed) == 1
	}, 90*time.Second, 100*time.Millisecond, "the unfunded channel is settled: the deposit comes back")
	require.Equal(t, "dispute", closed[0].ClosedBy)
	require.Equal(t, uint64(0), closed[0].Version, "the initial state is the one both signed")
	require.Equal(t, deposit.String(), closed[0].Balance.Mine)
	require.Empty(t, s.Channels(node.StateOpen))
	p.v.requireWithdrew(t, s.Address(), before, new(big.Int), from, "deposit refunded, only gas paid")
}

// requireUntouched checks that addr sent nothing from block from on and
// that its balance is still before.
func (p *faultPair) requireUntouched(t *testing.T, addr common.Address, before *big.Int, from uint64) {
	t.Helper()
	require.Empty(t, p.v.sentSince(t, from)[addr], "no transaction of %s was mined", addr.Hex())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now, err := p.v.chain.BalanceAt(ctx, addr, nil)
	require.NoError(t, err)
	require.Equal(t, before.String(), now.String())
}

// requireDepositMined waits until addr's deposit, sent from block from on,
// is mined: a funding period of a frozen clock (freezeClock) may end then.
func (p *faultPair) requireDepositMined(t *testing.T, addr common.Address, from uint64) {
	t.Helper()
	// Polled on the test goroutine (sentSince requires): not in
	// require.Eventually, whose condition runs on a goroutine of its own.
	deadline := time.Now().Add(time.Minute) // a hang guard, not a speed bound
	for len(p.v.sentSince(t, from)[addr]) == 0 {
		require.True(t, time.Now().Before(deadline), "the deposit of %s is mined", addr.Hex())
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPeerNeverFunds: bob accepts alice's channel but his deposit never
// reaches the chain (his node's chain refuses it). Bob hears at once that
// his deposit failed, and nothing of his moved. Alice, whose deposit is
// in, hears after the funding period that bob's deposit is missing; her
// node settles the unfunded channel on its initial state (register,
// challenge period, conclude, withdraw), and she has her deposit back,
// to the wei less the gas. Alice's funding period ends only once her
// deposit is mined (her node's clock stands still until then): a loaded
// machine may take longer to mine it than the period's 3 s of block time.
func TestPeerNeverFunds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newFaultPair(t)
	fromA, beforeA := p.head(t, p.alice.Address())
	_, beforeB := p.head(t, p.bob.Address())
	p.fb.failNext("deposit", -1)
	thaw := p.fa.freezeClock(t)

	accepted, err := perundtest.AcceptNext(ctx, p.bob, perundtest.Proposal, 2*time.Minute)
	require.NoError(t, err)
	alice := p.alice
	opened := perundtest.Async(func() error {
		_, err := alice.OpenChannel(ctx, "bob", "ETH", eth(5), eth(3), 3)
		return err
	})
	err = perundtest.Recv(t, accepted, time.Minute, "bob's accept")
	var ce *node.ChainError
	require.ErrorAs(t, err, &ce, "bob: %v", err)
	require.Contains(t, ce.Error(), "your deposit failed")
	require.ErrorIs(t, err, errInjected)
	p.requireDepositMined(t, alice.Address(), fromA)
	thaw()
	err = perundtest.Recv(t, opened, time.Minute, "alice's open")
	var te *node.TimeoutError
	require.ErrorAs(t, err, &te, "alice: %v", err)
	require.Contains(t, te.What, "waiting for bob's deposit")
	require.Equal(t, []string{"deposit"}, p.fb.refusedCalls())
	require.Empty(t, p.bob.Channels(node.StateOpen))

	p.requireRefunded(t, p.alice, eth(5), beforeA, fromA)
	p.requireUntouched(t, p.bob.Address(), beforeB, fromA)
}

// TestOwnDepositFails: the proposer's own deposit fails (her node's chain
// refuses it): alice's open fails at once with a chain error that says
// so, and nothing of hers moved; bob, who deposited, hears that alice's
// deposit is missing and gets his deposit back to the wei less the gas.
// Bob's funding period ends only once his deposit is mined (as alice's in
// TestPeerNeverFunds).
func TestOwnDepositFails(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newFaultPair(t)
	fromB, beforeB := p.head(t, p.bob.Address())
	_, beforeA := p.head(t, p.alice.Address())
	p.fa.failNext("deposit", -1)
	thaw := p.fb.freezeClock(t)

	accepted, err := perundtest.AcceptNext(ctx, p.bob, perundtest.Proposal, 2*time.Minute)
	require.NoError(t, err)
	_, err = p.alice.OpenChannel(ctx, "bob", "ETH", eth(2), eth(4), 3)
	var ce *node.ChainError
	require.ErrorAs(t, err, &ce, "alice: %v", err)
	require.Contains(t, ce.Error(), "your deposit failed")
	require.ErrorIs(t, err, errInjected)
	p.requireDepositMined(t, p.bob.Address(), fromB)
	thaw()
	err = perundtest.Recv(t, accepted, time.Minute, "bob's accept")
	var te *node.TimeoutError
	require.ErrorAs(t, err, &te, "bob: %v", err)
	require.Contains(t, te.What, "waiting for alice's deposit")
	require.Equal(t, []string{"deposit"}, p.fa.refusedCalls())
	require.Empty(t, p.alice.Channels(node.StateOpen))

	p.requireRefunded(t, p.bob, eth(4), beforeB, fromB)
	p.requireUntouched(t, p.alice.Address(), beforeA, fromB)
}

// TestPendingDepositRefunded: alice's deposit is sent but not mined
// before the funding period ends (a congested chain leaves it pending),
// so her open fails, and her node found nothing of hers in the channel
// when it failed. Once the deposit is mined, the node returns it (the
// channel settled on its initial state) without waiting for a restart or
// a login: her balance is back to the wei less the gas. Bob's node, which
// refunds his deposit at the same time, leaves the conclusion to her
// (concludeTurn): neither pays for a reverted conclusion.
func TestPendingDepositRefunded(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newFaultPair(t)
	fromA, beforeA := p.head(t, p.alice.Address())
	_, beforeB := p.head(t, p.bob.Address())
	release := p.fa.holdNext("deposit")
	accepted, err := perundtest.AcceptNext(ctx, p.bob, perundtest.Proposal, 2*time.Minute)
	require.NoError(t, err)
	_, err = p.alice.OpenChannel(ctx, "bob", "ETH", eth(2), eth(4), 3)
	require.Error(t, err, "alice's deposit is not in when the funding period ends")
	require.Error(t, perundtest.Recv(t, accepted, time.Minute, "bob's accept"))
	require.Empty(t, p.v.sentSince(t, fromA)[p.alice.Address()], "nothing of alice's is mined yet")
	release(t)
	p.requireRefunded(t, p.alice, eth(2), beforeA, fromA)
	// Bob's deposit is returned too, and the two refunds did not both
	// conclude the channel (one conclusion would have reverted): each of
	// their transactions succeeded.
	p.requireRefunded(t, p.bob, eth(4), beforeB, fromA)
}

// TestUnfundedChannelRestored: alice's node stops while it waits for
// bob's deposit, which never comes (after hers is in); the stop waits for
// the funding period to end, and the session, stopping, starts no refund.
// Started again, the node
// finds the channel restored unfunded and returns her deposit: the
// channel is settled on its initial state, her balance is back to the wei
// less the gas.
func TestUnfundedChannelRestored(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newFaultPair(t)
	fromA, beforeA := p.head(t, p.alice.Address())
	p.fb.failNext("deposit", -1)
	accepted, err := perundtest.AcceptNext(ctx, p.bob, perundtest.Proposal, 2*time.Minute)
	require.NoError(t, err)
	alice := p.alice
	opened := perundtest.Async(func() error {
		_, err := alice.OpenChannel(ctx, "bob", "ETH", eth(5), eth(3), 20)
		return err
	})
	p.requireDepositMined(t, alice.Address(), fromA)
	p.restartAlice(ctx, t)
	// The stop waits for the open, which ends with the funding period
	// while the session is stopping: no refund is started then.
	require.Error(t, perundtest.Recv(t, opened, time.Minute, "alice's open"))
	require.Error(t, perundtest.Recv(t, accepted, time.Minute, "bob's accept"), "bob's deposit was refused")

	p.requireRefunded(t, p.alice, eth(5), beforeA, fromA)
}

// TestWithdrawFailsThenRetried: an agreed close whose conclusion is mined
// but whose withdrawal the chain refuses twice: the close reports the
// chain error, the node retries the settle after its backoff without a
// caller, and the third withdrawal goes through: alice's share arrives to
// the wei, each of her transactions succeeded and none was sent twice
// on chain.
func TestWithdrawFailsThenRetried(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newFaultPair(t)
	ci := openAccepted(ctx, t, p.alice, p.bob, eth(5), eth(5))
	_, err := p.alice.Send(ctx, ci.ChannelID, eth(1))
	require.NoError(t, err)
	bobAgrees, err := perundtest.AcceptNext(ctx, p.bob, node.KindClose, 2*time.Minute)
	require.NoError(t, err)
	from, before := p.head(t, p.alice.Address())
	p.fa.failNext("withdraw", 2)
	_, err = p.alice.Close(ctx, ci.ChannelID)
	var ce *node.ChainError
	require.ErrorAs(t, err, &ce, "the withdrawal is refused: %v", err)
	require.NoError(t, perundtest.Recv(t, bobAgrees, time.Minute, "bob agrees to the close"))
	require.ErrorIs(t, err, errInjected)

	var got node.ChannelInfo
	require.Eventually(t, func() bool {
		got, err = p.alice.Channel(ci.ChannelID)
		return err == nil && got.State == node.StateClosed
	}, time.Minute, 50*time.Millisecond, "the retries go on without a caller")
	require.Equal(t, "agreement", got.ClosedBy)
	require.Equal(t, eth(4).String(), got.Balance.Mine)
	require.Equal(t, []string{"withdraw", "withdraw"}, p.fa.refusedCalls())
	p.v.requireWithdrew(t, p.alice.Address(), before, eth(4), from, "alice's share after two refused withdrawals")
}

// TestForceCloseOneConclusion: with both nodes up, a force close by
// either participant ends in one conclusion: the peer's node, which
// settles the registered state too, does not conclude it a second time
// (that one would revert, its gas lost) — participant 0 concludes, 1
// withdraws after it — and every transaction of both succeeds; each
// withdraws its share to the wei.
func TestForceCloseOneConclusion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		closer int // 0: alice (the proposer, participant 0); 1: bob
	}{
		{"participant 0 force-closes", 0},
		{"participant 1 force-closes", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			p := newFaultPair(t)
			ci := openAcceptedWith(ctx, t, p.alice, p.bob, eth(5), eth(5), 3)
			_, err := p.alice.Send(ctx, ci.ChannelID, eth(1))
			require.NoError(t, err)
			from, before := p.v.balanceNow(t, p.alice.Address(), p.bob.Address())
			sessions := []*node.Session{p.alice, p.bob}
			_, err = sessions[tc.closer].ForceClose(ctx, ci.ChannelID)
			require.NoError(t, err)
			peer := sessions[1-tc.closer]
			require.Eventually(t, func() bool {
				c, err := peer.Channel(ci.ChannelID)
				return err == nil && c.State == node.StateClosed
			}, time.Minute, 50*time.Millisecond, "the peer's node settles too")
			concludes := 0
			for who, rs := range p.v.sentSince(t, from) {
				for _, r := range rs {
					tx, _, err := p.v.chain.TransactionByHash(ctx, r.TxHash)
					require.NoError(t, err)
					t.Logf("%s sent %s (status %d, block %d)", who.Hex(), methodOf(tx), r.Status, r.BlockNumber)
					if methodOf(tx) == "conclude" {
						concludes++
					}
				}
			}
			require.Equal(t, 1, concludes, "one conclusion")
			p.v.requireWithdrew(t, p.alice.Address(), before[0], eth(4), from, "alice's share")
			p.v.requireWithdrew(t, p.bob.Address(), before[1], eth(6), from, "bob's share")
		})
	}
}
