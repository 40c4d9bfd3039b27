package node_test

import (
	"context"
	"crypto/ecdsa"
	"io"
	"log/slog"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/internal/leaktest"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/internal/pgtest"
	"github.com/perund/perund/node"
	"github.com/perund/perund/perunlog"
	"github.com/perund/perund/subscriptions"
)

func eth(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), chain.Ether) }

type env struct {
	kit   *perundtest.Chain
	chain *chain.Embedded
	c     chain.Contracts

	mu sync.Mutex
	// listen is the peer port of each data dir's node: a node started again
	// from its dir listens where it did, as one with a fixed comm.listen.
	listen map[string]string
	// operators are funded watchtower accounts, one per data dir (opOf).
	operators []*ecdsa.PrivateKey
	opOf      map[string]*ecdsa.PrivateKey
}

// envOperators is how many data dirs of one env get a watchtower account.
const envOperators = 8

func newEnv(t *testing.T, keys ...string) (*env, []common.Address) {
	alloc := map[common.Address]*big.Int{}
	var addrs []common.Address
	for _, k := range keys {
		pk, err := crypto.HexToECDSA(k)
		require.NoError(t, err)
		a := crypto.PubkeyToAddress(pk.PublicKey)
		alloc[a] = eth(100)
		addrs = append(addrs, a)
	}
	ops := make([]*ecdsa.PrivateKey, envOperators)
	for i := range ops {
		ops[i], _ = crypto.GenerateKey()
		alloc[crypto.PubkeyToAddress(ops[i].PublicKey)] = eth(100)
	}
	kit := perundtest.NewChain(t, perundtest.ChainOptions{Alloc: alloc})
	return &env{kit: kit, chain: kit.Embedded, c: kit.Contracts, listen: map[string]string{}, operators: ops, opOf: map[string]*ecdsa.PrivateKey{}}, addrs
}

// operator returns the watchtower account of the node in dir: the same
// for every start from dir, a new funded one for each dir.
func (v *env) operator(t *testing.T, dir string) *ecdsa.PrivateKey {
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.opOf[dir]; ok {
		return k
	}
	require.NotEmpty(t, v.operators, "more data dirs than envOperators")
	k := v.operators[0]
	v.operators = v.operators[1:]
	v.opOf[dir] = k
	return k
}

func (v *env) node(t *testing.T, keys map[string]string) *node.Node {
	return v.nodeIn(t, t.TempDir(), keys)
}

func (v *env) nodeIn(t *testing.T, dir string, keys map[string]string) *node.Node {
	return v.nodeWith(t, dir, keys, testNode{})
}

// testNode changes what nodeWith gives a node: its logger (default: none),
// its chain (default: the env's) and further configuration flags.
type testNode struct {
	log   *slog.Logger
	chain chain.Backend
	flags map[string]any
	// noOperator starts the node without a watchtower account.
	noOperator bool
}

func (v *env) nodeWith(t *testing.T, dir string, keys map[string]string, o testNode) *node.Node {
	v.mu.Lock()
	listen, ok := v.listen[dir]
	v.mu.Unlock()
	if !ok {
		listen = "127.0.0.1:0"
	}
	flags := map[string]any{"comm.listen": listen, "channel.responseTimeout": "5s", "channel.challengeDuration": 600}
	for k, val := range o.flags {
		flags[k] = val
	}
	var op *ecdsa.PrivateKey
	if !o.noOperator {
		op = v.operator(t, dir)
	}
	n := v.kit.Node(t, perundtest.NodeOptions{Dir: dir, Flags: flags, Logger: o.log, Chain: o.chain, Keys: keys,
		Options: func(no *node.Options) { no.Watcher = op }})
	v.mu.Lock()
	v.listen[dir] = n.PeerListenAddr().String()
	v.mu.Unlock()
	return n
}

const (
	keyAlice = perundtest.KeyAlice
	keyBob   = perundtest.KeyBob
)

// TestTwoNodesOverTCP runs open, pay, request and close between two nodes
// sharing one embedded chain, talking over TCP on 127.0.0.1.
func TestTwoNodesOverTCP(t *testing.T) { onEachBackend(t, testTwoNodesOverTCP) }

// testTwoNodesOverTCP is TestTwoNodesOverTCP with alice's node configured
// by flagsA and bob's by flagsB (their stores).
func testTwoNodesOverTCP(t *testing.T, flagsA, flagsB map[string]any) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	na, nb, alice, bob := v.twoNodes(ctx, t, addrs, flagsA, flagsB)
	var err error
	// A cooperative close is no dispute: neither side hears of one.
	var disputes []*subscriptions.Subscription
	for _, s := range []*node.Session{alice, bob} {
		sub, err := s.Hub().Subscribe(subscriptions.Disputes)
		require.NoError(t, err)
		disputes = append(disputes, sub)
	}

	ci := openAccepted(ctx, t, alice, bob, eth(10), eth(10))
	require.Equal(t, "open", ci.State)

	for i := 0; i < 20; i++ {
		_, err = alice.Send(ctx, ci.ChannelID, big.NewInt(1e16))
		require.NoError(t, err)
	}
	// bob enables the state right after sending his signature: allow a moment.
	var got node.ChannelInfo
	require.Eventually(t, func() bool {
		got, err = bob.Channel(ci.ChannelID)
		return err == nil && got.Version == 20
	}, 5*time.Second, time.Millisecond)
	require.Equal(t, new(big.Int).Add(eth(10), big.NewInt(2e17)).String(), got.Balance.Mine)

	// Paying more than the channel holds changes nothing, on either side,
	// and keeps the peer connection: the next payment needs no new one.
	conns := na.PeerStats().Accepted + nb.PeerStats().Accepted
	require.NotZero(t, conns, "the nodes talk over a peer connection")
	before, err := alice.Channel(ci.ChannelID)
	require.NoError(t, err)
	_, err = alice.Send(ctx, ci.ChannelID, eth(50))
	var ie *node.InsufficientFundsError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, before.Balance.Mine, ie.Available)
	after, err := alice.Channel(ci.ChannelID)
	require.NoError(t, err)
	require.Equal(t, before.Version, after.Version)
	require.Equal(t, before.Balance, after.Balance)
	peerView, err := bob.Channel(ci.ChannelID)
	require.NoError(t, err)
	require.Equal(t, before.Version, peerView.Version)

	// Bob requests; alice answers manually.
	aliceAccepts, err := perundtest.AcceptNext(ctx, alice, node.KindRequest, time.Minute)
	require.NoError(t, err)
	_, err = bob.Request(ctx, ci.ChannelID, eth(1))
	require.NoError(t, err)
	require.NoError(t, perundtest.Recv(t, aliceAccepts, time.Minute, "alice accepts the request"))
	require.Equal(t, conns, na.PeerStats().Accepted+nb.PeerStats().Accepted, "no new peer connection after the refused payment")

	// Close: bob must agree; he answers the close update.
	bobAgrees, err := perundtest.AcceptNext(ctx, bob, node.KindClose, time.Minute)
	require.NoError(t, err)
	closed, err := alice.Close(ctx, ci.ChannelID)
	require.NoError(t, err)
	require.NoError(t, perundtest.Recv(t, bobAgrees, time.Minute, "bob agrees to the close"))
	require.Equal(t, "closed", closed.State)
	require.Equal(t, "agreement", closed.ClosedBy)
	require.Eventually(t, func() bool {
		c, err := bob.Channel(ci.ChannelID)
		return err == nil && c.State == "closed"
	}, 30*time.Second, 50*time.Millisecond)
	// alice: 10 - 0.2 - 1 (bob requested 1) = 8.8 in the channel
	require.Equal(t, new(big.Int).Sub(eth(9), big.NewInt(2e17)).String(), closed.Balance.Mine)
	for i, s := range []*node.Session{alice, bob} {
		require.Empty(t, disputes[i].Events(), "no dispute event after a cooperative close")
		log, err := s.Disputes("")
		require.NoError(t, err)
		require.Empty(t, log)
	}
}

// openAccepted opens a channel from alice to bob, who accepts it; it
// checks that both have the channel and returns alice's view.
func openAccepted(ctx context.Context, t *testing.T, alice, bob *node.Session, mine, theirs *big.Int) node.ChannelInfo {
	t.Helper()
	return openAcceptedWith(ctx, t, alice, bob, mine, theirs, 0)
}

// openAcceptedWith is openAccepted with a challenge duration (seconds; 0:
// the node's default). Block time on the embedded chain follows the clock,
// so a test that waits out a dispute uses a short one.
func openAcceptedWith(ctx context.Context, t *testing.T, alice, bob *node.Session, mine, theirs *big.Int, challenge uint64) node.ChannelInfo {
	t.Helper()
	return perundtest.OpenAccepted(ctx, t, alice, bob, mine, theirs, challenge)
}

// introduce puts alice and bob in each other's contacts.
func introduce(t *testing.T, alice, bob *node.Session) {
	t.Helper()
	perundtest.Introduce(t, alice, "alice", bob, "bob")
}

// loginPair logs alice (addrs[0], password "alice") in on na and bob
// (addrs[1], "bob") on nb, one node for both where na is nb, and
// introduces them.
func loginPair(t *testing.T, na, nb *node.Node, addrs []common.Address) (alice, bob *node.Session) {
	t.Helper()
	alice = perundtest.Login(t, na, addrs[0], "alice")
	bob = perundtest.Login(t, nb, addrs[1], "bob")
	introduce(t, alice, bob)
	return alice, bob
}

// paySeq pays amt on one channel, from either side, and checks that each
// payment is the channel's next version.
type paySeq struct {
	id      string
	amt     *big.Int
	version uint64 // the channel's version before the next payment
}

// pay sends p.amt from s and checks the new version.
func (p *paySeq) pay(ctx context.Context, t *testing.T, s *node.Session) {
	t.Helper()
	got, err := s.Send(ctx, p.id, p.amt)
	require.NoError(t, err, "the channel is usable")
	p.version++
	require.Equal(t, p.version, got.Version)
}

// pg is the PostgreSQL cluster of the tests that run the node on a
// PostgreSQL store, started by the first of them.
var pg = pgtest.NewCluster()

// TestMain stops the PostgreSQL cluster and fails the package when a
// goroutine is left once all tests ran; the ignored ones belong to
// libraries (internal/leaktest).
func TestMain(m *testing.M) {
	perunlog.Install(slog.New(slog.NewTextHandler(io.Discard, nil)))
	leaktest.VerifyTestMain(m, pg.Stop)
}

// TestRestart: both nodes stop with an open channel and start again from
// their data dirs; the channel is restored at the latest version, the comm
// address is the same, payments continue and the close settles.
func TestRestart(t *testing.T) { onEachBackend(t, testRestart) }

// testRestart is TestRestart with alice's node configured by flagsA and
// bob's by flagsB (their stores, the same at each start).
func testRestart(t *testing.T, flagsA, flagsB map[string]any) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	dirA, dirB := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := func() (*node.Node, *node.Node, *node.Session, *node.Session) {
		na := v.nodeWith(t, dirA, map[string]string{keyAlice: "alice"}, testNode{flags: flagsA})
		nb := v.nodeWith(t, dirB, map[string]string{keyBob: "bob"}, testNode{flags: flagsB})
		a, err := na.OpenSession(ctx, addrs[0], "alice", false)
		require.NoError(t, err)
		b, err := nb.OpenSession(ctx, addrs[1], "bob", false)
		require.NoError(t, err)
		return na, nb, a, b
	}
	na, nb, alice, bob := start()
	introduce(t, alice, bob)
	commA := alice.CommAddress()
	ci := openAccepted(ctx, t, alice, bob, eth(5), eth(5))
	for i := 0; i < 10; i++ {
		_, err := alice.Send(ctx, ci.ChannelID, big.NewInt(1000))
		require.NoError(t, err)
	}
	var conflict *node.ConflictError
	require.ErrorAs(t, na.CloseSession(ctx, alice, false), &conflict, "open channels block a plain close")
	require.Equal(t, []string{ci.ChannelID}, conflict.Channels)
	again, openErr := na.OpenSession(ctx, addrs[0], "alice", false)
	require.NoError(t, openErr)
	require.Same(t, alice, again, "the session stays open")
	require.NoError(t, na.Close(ctx))
	require.NoError(t, nb.Close(ctx))

	_, _, alice, bob = start()
	require.Equal(t, commA, alice.CommAddress(), "the comm address survives a restart")
	for _, s := range []*node.Session{alice, bob} {
		got, err := s.Channel(ci.ChannelID)
		require.NoError(t, err)
		require.Equal(t, uint64(10), got.Version)
		require.Equal(t, "open", got.State)
		if s == alice {
			require.Equal(t, ci.OpenedAt, got.OpenedAt, "metadata survives a restart")
		}
	}
	_, err := bob.Send(ctx, ci.ChannelID, big.NewInt(500))
	require.NoError(t, err)
	bobAgrees, err := perundtest.AcceptNext(ctx, bob, node.KindClose, time.Minute)
	require.NoError(t, err)
	closed, err := alice.Close(ctx, ci.ChannelID)
	require.NoError(t, err)
	require.NoError(t, perundtest.Recv(t, bobAgrees, time.Minute, "bob agrees to the close"))
	want := new(big.Int).Sub(eth(5), big.NewInt(10000-500))
	require.Equal(t, want.String(), closed.Balance.Mine)
}
