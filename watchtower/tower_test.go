package watchtower_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/perun-network/perun-eth-backend/bindings/adjudicator"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	ethwallet "github.com/perun-network/perun-eth-backend/wallet"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/wallet"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/internal/leaktest"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/watchtower"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// world is an embedded chain with the Perun contracts, two funded parties
// (alice, bob) and a funded operator account that sends refutations.
type world struct {
	e        *chain.Embedded
	id       *big.Int
	c        chain.Contracts
	keys     [2]*ecdsa.PrivateKey
	operator *ecdsa.PrivateKey
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{}
	for i := range w.keys {
		w.keys[i], _ = crypto.GenerateKey()
	}
	w.operator, _ = crypto.GenerateKey()
	alloc := map[common.Address]*big.Int{}
	for _, k := range append(w.keys[:], w.operator) {
		alloc[crypto.PubkeyToAddress(k.PublicKey)] = new(big.Int).Mul(big.NewInt(100), chain.Ether)
	}
	e, err := chain.NewEmbedded(chain.EmbeddedOptions{Alloc: alloc, BlockInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w.e = e
	w.id, err = e.ChainID(ctx)
	require.NoError(t, err)
	w.c, _, err = e.DeployAll(ctx, nil, nil, "")
	require.NoError(t, err)
	return w
}

func (w *world) addr(k *ecdsa.PrivateKey) common.Address { return crypto.PubkeyToAddress(k.PublicKey) }

// adjudicatorOf returns an adjudicator that sends with key.
func (w *world) adjudicatorOf(k *ecdsa.PrivateKey) *ethchannel.Adjudicator {
	cb, acc := chain.DeployerBackend(w.e, w.id, k)
	return ethchannel.NewAdjudicator(cb, w.c.Adjudicator, acc.Address, accounts.Account{Address: acc.Address}, 1_000_000)
}

// channelOf is a two-party ETH channel between alice and bob; it is never
// funded: registering needs no deposit.
type channelOf struct {
	w      *world
	params *channel.Params
}

func (w *world) newChannel(t *testing.T, challenge uint64) *channelOf {
	t.Helper()
	parts := make([]map[wallet.BackendID]wallet.Address, 2)
	for i, k := range w.keys {
		parts[i] = map[wallet.BackendID]wallet.Address{ethwallet.BackendID: ethwallet.AsWalletAddr(w.addr(k))}
	}
	nonce := make([]byte, 32)
	_, _ = rand.Read(nonce)
	p, err := channel.NewParams(challenge, parts, channel.NoApp(), channel.NonceFromBytes(nonce), true, false, channel.ZeroAux)
	require.NoError(t, err)
	return &channelOf{w: w, params: p}
}

// signed is version v of the channel giving alice a and bob b ether,
// signed by both.
func (c *channelOf) signed(t *testing.T, v uint64, a, b int64) channel.Transaction {
	t.Helper()
	asset := ethchannel.NewAsset(c.w.id, c.w.c.AssetHolderETH)
	alloc := channel.NewAllocation(2, []wallet.BackendID{ethwallet.BackendID}, asset)
	alloc.SetAssetBalances(asset, []channel.Bal{new(big.Int).Mul(big.NewInt(a), chain.Ether), new(big.Int).Mul(big.NewInt(b), chain.Ether)})
	st := &channel.State{ID: c.params.ID(), Version: v, App: channel.NoApp(), Allocation: *alloc, Data: channel.NoData()}
	return perundtest.SignAll(t, st, c.w.keys[:]...)
}

func (c *channelOf) signedState(tx channel.Transaction) channel.SignedState {
	return channel.SignedState{Params: c.params, State: tx.State, Sigs: tx.Sigs}
}

// register registers tx on chain, sent by bob.
func (c *channelOf) register(t *testing.T, tx channel.Transaction) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := c.w.adjudicatorOf(c.w.keys[1]).Register(ctx, channel.AdjudicatorReq{Params: c.params, Tx: tx}, nil)
	require.NoError(t, err)
}

// onChain reads the channel's dispute entry.
func (c *channelOf) onChain(t *testing.T) (version uint64, phase uint8, timeout uint64) {
	t.Helper()
	caller, err := adjudicator.NewAdjudicatorCaller(c.w.c.Adjudicator, c.w.e)
	require.NoError(t, err)
	d, err := caller.Disputes(&bind.CallOpts{Context: context.Background()}, c.params.ID())
	require.NoError(t, err)
	return d.Version, d.Phase, d.Timeout
}

// events records a tower's events.
type events struct {
	mu   sync.Mutex
	list []watchtower.Event
}

func (e *events) add(ev watchtower.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
}

func (e *events) all() []watchtower.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]watchtower.Event(nil), e.list...)
}

// newTower starts a tower over w whose refutations the operator sends.
func (w *world) newTower(t *testing.T, tweak func(*watchtower.Options)) (*watchtower.Tower, *events) {
	t.Helper()
	op := w.adjudicatorOf(w.operator)
	evs := &events{}
	o := watchtower.Options{
		Chain: w.e, ChainID: w.id, Adjudicator: w.c.Adjudicator,
		Refute: func(ctx context.Context, _ []common.Address, req channel.AdjudicatorReq) error {
			return op.Register(ctx, req, nil)
		},
		OnEvent: evs.add,
		Log:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if tweak != nil {
		tweak(&o)
	}
	tw, err := watchtower.New(o)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, tw.Close(ctx))
	})
	return tw, evs
}

func waitVersion(t *testing.T, c *channelOf, v uint64) {
	t.Helper()
	require.Eventually(t, func() bool {
		got, _, _ := c.onChain(t)
		return got == v
	}, time.Minute, 50*time.Millisecond, "version %d registered on chain", v)
}

// TestRefutesWithoutClient: no go-perun client runs (the user is logged
// out); bob registers version 1 while the tower holds version 5 signed by
// both; the operator's transaction registers version 5, and the events say
// who sent what.
func TestRefutesWithoutClient(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	tw, evs := w.newTower(t, nil)
	c := w.newChannel(t, 60)
	alice := w.addr(w.keys[0])
	require.NoError(t, tw.Watch(alice, c.signedState(c.signed(t, 5, 15, 5))))
	tw.Start()
	// Once the first check of the channel ran, the registration reaches the
	// tower as an event (with its sender).
	require.Eventually(t, func() bool { return tw.Stats().Checks == 1 }, 30*time.Second, 10*time.Millisecond)

	c.register(t, c.signed(t, 1, 11, 9))
	waitVersion(t, c, 5)
	require.Eventually(t, func() bool { return len(evs.all()) >= 2 }, 30*time.Second, 10*time.Millisecond)
	list := evs.all()
	stale, refuted := list[0], list[1]
	require.Equal(t, watchtower.PhaseRegistered, stale.Phase)
	require.EqualValues(t, 1, stale.Version)
	require.EqualValues(t, 5, stale.Latest)
	require.True(t, stale.Refuting)
	require.Equal(t, w.addr(w.keys[1]), stale.By, "bob sent the stale registration")
	require.Equal(t, []common.Address{alice}, stale.Owners)
	require.EqualValues(t, 5, refuted.Version)
	require.False(t, refuted.Refuting)
	require.True(t, refuted.Refuted, "the tower's own refutation, mined")
	require.False(t, stale.Refuted)
	require.Equal(t, w.addr(w.operator), refuted.By, "the operator sent the refutation")
	require.NotZero(t, refuted.Timeout)
	require.EqualValues(t, 1, tw.Stats().Refutations)
}

// TestCheckFindsOldRegistration: the stale state was registered before the
// tower started and outside its look-back (one block here, a hundred by
// default): no event replays it, the on-chain check of the channel finds it
// and the tower refutes.
func TestCheckFindsOldRegistration(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	c := w.newChannel(t, 600)
	c.register(t, c.signed(t, 1, 11, 9))
	waitBlocks(t, w, 3) // out of the look-back

	tw, evs := w.newTower(t, func(o *watchtower.Options) { o.LookBack = 1 })
	require.NoError(t, tw.Watch(w.addr(w.keys[0]), c.signedState(c.signed(t, 3, 13, 7))))
	tw.Start()
	waitVersion(t, c, 3)
	require.Eventually(t, func() bool { return len(evs.all()) >= 2 }, 30*time.Second, 10*time.Millisecond)
	first := evs.all()[0]
	require.EqualValues(t, 1, first.Version)
	require.True(t, first.Refuting)
	require.Equal(t, common.Hash{}, first.TxHash, "found by the check, not an event")
}

// TestOneSubscriptionForManyChannels: watching 300 channels adds no
// goroutine (one subscription for all); a stale registration of one of
// them is refuted, the others stay untouched.
// Not parallel: it counts the process's goroutines.
func TestOneSubscriptionForManyChannels(t *testing.T) {
	w := newWorld(t)
	tw, _ := w.newTower(t, nil)
	tw.Start()
	require.Eventually(t, func() bool { return tw.Stats().Subscribed }, 30*time.Second, 10*time.Millisecond)
	alice := w.addr(w.keys[0])
	chans := make([]*channelOf, 300)
	txs := make([]channel.Transaction, len(chans))
	for i := range chans {
		chans[i] = w.newChannel(t, 60)
		txs[i] = chans[i].signed(t, 2, 12, 8)
	}
	before := runtime.NumGoroutine()
	for i, c := range chans {
		require.NoError(t, tw.Watch(alice, c.signedState(txs[i])))
	}
	require.Eventually(t, func() bool { return tw.Stats().Checks >= uint64(len(chans)) }, time.Minute, 10*time.Millisecond)
	// A goroutine per channel would add 300; the margin is for the chain's
	// and the RPC's own goroutines that come and go meanwhile.
	require.Less(t, runtime.NumGoroutine()-before, 20, "goroutines do not grow with the channels watched")
	require.Equal(t, len(chans), tw.Stats().Watched)

	target := chans[150]
	target.register(t, target.signed(t, 1, 11, 9))
	waitVersion(t, target, 2)
	v, _, _ := chans[151].onChain(t)
	require.Zero(t, v)
}

// TestClientAttachDetach: a client's watcher relays the tower's events to
// go-perun's event stream and publishes its states; when the client stops
// watching (its user logs out) the stream closes but the tower still
// refutes with the newest state the client published.
func TestClientAttachDetach(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	tw, _ := w.newTower(t, nil)
	tw.Start()
	c := w.newChannel(t, 60)
	alice := w.addr(w.keys[0])
	var seen events
	cw := tw.ForUser(alice, seen.add)
	ctx := context.Background()
	pub, sub, err := cw.StartWatchingLedgerChannel(ctx, c.signedState(c.signed(t, 2, 12, 8)))
	require.NoError(t, err)
	_, _, err = cw.StartWatchingLedgerChannel(ctx, c.signedState(c.signed(t, 2, 12, 8)))
	require.ErrorContains(t, err, "already watching")

	// A state missing a signature is not taken as the latest.
	partial := c.signed(t, 9, 19, 1)
	partial.Sigs[1] = nil
	require.NoError(t, pub.Publish(ctx, partial))
	require.NoError(t, pub.Publish(ctx, c.signed(t, 4, 14, 6)))
	latest, ok := tw.Watching(c.params.ID())
	require.True(t, ok)
	require.EqualValues(t, 4, latest)

	require.NoError(t, cw.StopWatching(ctx, c.params.ID()))
	_, open := <-sub.EventStream()
	require.False(t, open, "the stream closes when the client stops watching")

	c.register(t, c.signed(t, 1, 11, 9))
	waitVersion(t, c, 4)
	require.Empty(t, seen.all(), "a detached session hears nothing")

	// Attaching again replays the newest on-chain state.
	cw2 := tw.ForUser(alice, seen.add)
	_, sub2, err := cw2.StartWatchingLedgerChannel(ctx, c.signedState(c.signed(t, 4, 14, 6)))
	require.NoError(t, err)
	select {
	case ev := <-sub2.EventStream():
		_, isReg := ev.(*channel.RegisteredEvent)
		require.True(t, isReg)
		require.EqualValues(t, 4, ev.Version())
	case <-time.After(30 * time.Second):
		t.Fatal("no replayed event")
	}
	require.NoError(t, cw2.StopWatching(ctx, c.params.ID()))
}

// TestTooLateIsNotRetried: the stale registration's challenge period is
// over when the tower starts; it reports the dispute and does not send a
// refutation the contract would revert.
func TestTooLateIsNotRetried(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	c := w.newChannel(t, 1)
	c.register(t, c.signed(t, 1, 11, 9))
	_, _, timeout := c.onChain(t)
	require.Eventually(t, func() bool {
		h, err := w.e.HeaderByNumber(context.Background(), nil)
		return err == nil && h.Time > timeout
	}, 30*time.Second, 50*time.Millisecond)
	var refutes int
	var mu sync.Mutex
	tw, evs := w.newTower(t, func(o *watchtower.Options) {
		o.Refute = func(context.Context, []common.Address, channel.AdjudicatorReq) error {
			mu.Lock()
			refutes++
			mu.Unlock()
			return nil
		}
	})
	require.NoError(t, tw.Watch(w.addr(w.keys[0]), c.signedState(c.signed(t, 3, 13, 7))))
	tw.Start()
	require.Eventually(t, func() bool { return tw.Stats().RefuteErrors == 1 }, 30*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return len(evs.all()) == 2 }, 10*time.Second, 10*time.Millisecond)
	failed := evs.all()[1]
	require.Contains(t, failed.RefuteErr, "challenge period is over", "the failure is reported")
	require.False(t, failed.Refuting)
	time.Sleep(3 * time.Second) // a retry would come after 2 s
	mu.Lock()
	defer mu.Unlock()
	require.Zero(t, refutes, "nothing sent after the challenge period")
	require.EqualValues(t, 1, tw.Stats().RefuteErrors)
}

// TestForgetPerOwner: a channel of two users of the node stays watched
// until both withdrew.
func TestForgetPerOwner(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	tw, _ := w.newTower(t, nil)
	c := w.newChannel(t, 60)
	alice, bob := w.addr(w.keys[0]), w.addr(w.keys[1])
	require.NoError(t, tw.Watch(alice, c.signedState(c.signed(t, 2, 12, 8))))
	require.NoError(t, tw.Watch(bob, c.signedState(c.signed(t, 3, 13, 7))))
	latest, ok := tw.Watching(c.params.ID())
	require.True(t, ok)
	require.EqualValues(t, 3, latest, "the newest state of either owner")
	tw.Forget(c.params.ID(), alice)
	_, ok = tw.Watching(c.params.ID())
	require.True(t, ok, "bob has not withdrawn yet")
	tw.Forget(c.params.ID(), bob)
	_, ok = tw.Watching(c.params.ID())
	require.False(t, ok)
}

// flakyChain fails the adjudicator's dispute reads while down is set.
type flakyChain struct {
	ethchannel.ContractInterface
	mu   sync.Mutex
	down bool
}

func (f *flakyChain) setDown(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = v
}

func (f *flakyChain) CallContract(ctx context.Context, call ethereum.CallMsg, block *big.Int) ([]byte, error) {
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return nil, errors.New("chain unreachable (test)")
	}
	return f.ContractInterface.CallContract(ctx, call, block)
}

// TestCheckRetried: reading a channel's dispute fails while the chain
// does not answer calls; the check is retried (without a goroutine per
// channel) and, once the chain answers, the old registration is refuted.
// Not parallel: it counts the process's goroutines.
func TestCheckRetried(t *testing.T) {
	w := newWorld(t)
	c := w.newChannel(t, 600)
	c.register(t, c.signed(t, 1, 11, 9))
	waitBlocks(t, w, 3) // out of the one-block look-back: only a check finds it
	fc := &flakyChain{ContractInterface: w.e}
	fc.setDown(true)
	tw, _ := w.newTower(t, func(o *watchtower.Options) { o.Chain = fc; o.LookBack = 1 })
	chans := make([]*channelOf, 50)
	for i := range chans {
		chans[i] = w.newChannel(t, 600)
		require.NoError(t, tw.Watch(w.addr(w.keys[0]), chans[i].signedState(chans[i].signed(t, 2, 12, 8))))
	}
	require.NoError(t, tw.Watch(w.addr(w.keys[0]), c.signedState(c.signed(t, 3, 13, 7))))
	tw.Start()
	require.Eventually(t, func() bool { return tw.Stats().Subscribed && tw.Stats().Checks >= 51 }, 30*time.Second, 10*time.Millisecond,
		"every check ran (and failed)")
	before := runtime.NumGoroutine()
	time.Sleep(2500 * time.Millisecond) // the retries come and fail again
	require.Greater(t, tw.Stats().Checks, uint64(51), "checks are retried")
	require.LessOrEqual(t, runtime.NumGoroutine()-before, 1, "no goroutine per failed check")
	v, _, _ := c.onChain(t)
	require.EqualValues(t, 1, v)
	fc.setDown(false)
	waitVersion(t, c, 3)
}

// waitBlocks waits until n more blocks are sealed.
func waitBlocks(t *testing.T, w *world, n uint64) {
	t.Helper()
	ctx := context.Background()
	start, err := w.e.BlockNumber(ctx)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		b, err := w.e.BlockNumber(ctx)
		return err == nil && b >= start+n
	}, 30*time.Second, 20*time.Millisecond)
}
