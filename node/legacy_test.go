package node_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/hex"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	ethwallet "github.com/perun-network/perun-eth-backend/wallet"
	"github.com/perun-network/perun-eth-backend/wallet/simple"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/client"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/watcher/local"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"
	wiresimple "perun.network/go-perun/wire/net/simple"
	"perun.network/go-perun/wire/protobuf"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/contacts"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/node"
	"github.com/perund/perund/wireid"
)

// bareClient is a go-perun client as an application builds it without
// perund (as bench/direct_test.go): go-perun's simple TCP+TLS dialer and
// listener, hence go-perun's own, replayable handshake. It accepts every
// channel update and rejects proposals.
type bareClient struct {
	addr   common.Address
	client *client.Client
	bus    *wirenet.Bus
	dialer *wiresimple.Dialer
	host   string // where its listener is
	asset  *ethchannel.Asset
}

func newBareClient(t *testing.T, v *env, key *ecdsa.PrivateKey) *bareClient {
	ctx := context.Background()
	id, err := v.chain.ChainID(ctx)
	require.NoError(t, err)
	addr := crypto.PubkeyToAddress(key.PublicKey)
	b := &bareClient{addr: addr, asset: ethchannel.NewAsset(id, v.c.AssetHolderETH)}
	l, err := wiresimple.NewTCPListener("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSignedCert(t)}, MinVersion: tls.VersionTLS13})
	require.NoError(t, err)
	b.host = l.Addr().(*net.TCPAddr).String()
	b.dialer = wiresimple.NewTCPDialer(5*time.Second, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) //nolint:gosec
	b.bus = wirenet.NewBus(wireid.NewAccount(key).Map(), b.dialer, protobuf.Serializer())
	listened := make(chan struct{})
	go func() { defer close(listened); b.bus.Listen(l) }()
	w := simple.NewWallet(key)
	chain.ResetNonce(id, addr)
	cb := ethchannel.NewContractBackend(v.chain, ethchannel.MakeChainID(id), simple.NewTransactor(w, types.LatestSignerForChainID(id)), 1)
	acc := accounts.Account{Address: addr}
	funder := ethchannel.NewFunder(cb)
	funder.RegisterAsset(*b.asset, ethchannel.NewETHDepositor(100_000), acc)
	adj := ethchannel.NewAdjudicator(cb, v.c.Adjudicator, addr, acc, 1_000_000)
	watcher, err := local.NewWatcher(adj)
	require.NoError(t, err)
	b.client, err = client.New(wireid.NewAddress(addr).Map(), b.bus, funder, adj, map[wallet.BackendID]wallet.Wallet{ethwallet.BackendID: w}, watcher)
	require.NoError(t, err)
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		b.client.Handle(
			client.ProposalHandlerFunc(func(_ client.ChannelProposal, r *client.ProposalResponder) {
				_ = r.Reject(ctx, "bare client accepts no proposals")
			}),
			client.UpdateHandlerFunc(func(_ *channel.State, _ client.ChannelUpdate, r *client.UpdateResponder) {
				_ = r.Accept(ctx)
			}))
	}()
	t.Cleanup(func() {
		b.client.Close()
		b.bus.Close()
		<-handled
		<-listened
	})
	return b
}

// register makes peer (a perund user) reachable at hostPort.
func (b *bareClient) register(peer common.Address, hostPort string) {
	b.dialer.Register(wireid.NewAddress(peer).Map(), hostPort)
}

// propose proposes a channel with peer: mine for the bare client, theirs
// for the peer.
func (b *bareClient) propose(ctx context.Context, peer common.Address, mine, theirs *big.Int) (*client.Channel, error) {
	alloc := channel.NewAllocation(2, []wallet.BackendID{ethwallet.BackendID}, b.asset)
	alloc.SetAssetBalances(b.asset, []channel.Bal{mine, theirs})
	prop, err := client.NewLedgerChannelProposal(600, map[wallet.BackendID]wallet.Address{ethwallet.BackendID: ethwallet.AsWalletAddr(b.addr)}, alloc,
		[]map[wallet.BackendID]wire.Address{wireid.NewAddress(b.addr).Map(), wireid.NewAddress(peer).Map()}, client.WithRandomNonce())
	if err != nil {
		return nil, err
	}
	return b.client.ProposeChannel(ctx, prop)
}

// TestLegacyPeer: a bare go-perun client listed in comm.legacyPeers opens a
// channel with a perund user, both pay, and the close settles with exact
// balances. The bare client dials (perund's dialer speaks only the bound
// handshake), and every message in both directions uses that connection.
func TestLegacyPeer(t *testing.T) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	rec, lg := newLogRecorder()
	n := v.nodeWith(t, t.TempDir(), map[string]string{keyBob: "bob"},
		testNode{log: lg, flags: map[string]any{"comm.legacyPeers": addrs[0].Hex()}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bob, err := n.OpenSession(ctx, addrs[1], "bob", false)
	require.NoError(t, err)
	aliceKey, _ := crypto.HexToECDSA(keyAlice)
	bare := newBareClient(t, v, aliceKey)
	bare.register(addrs[1], bob.CommAddress())

	accepted, err := perundtest.AcceptNext(ctx, bob, perundtest.Proposal, time.Minute)
	require.NoError(t, err)
	ch, err := bare.propose(ctx, addrs[1], eth(5), eth(5))
	require.NoError(t, err)
	require.NoError(t, perundtest.Recv(t, accepted, time.Minute, "bob accepts the channel"))
	id := ch.ID()
	ci, err := bob.Channel("0x" + hex.EncodeToString(id[:]))
	require.NoError(t, err)
	require.Equal(t, "open", ci.State)
	require.Equal(t, 1, rec.count("accepted a legacy (replayable) handshake", "peer", addrs[0].Hex(), "user", addrs[1].Hex()))

	// bob pays 1000 wei, the bare client pays back 300.
	got, err := bob.Send(ctx, ci.ChannelID, big.NewInt(1000))
	require.NoError(t, err)
	require.Equal(t, uint64(1), got.Version)
	require.NoError(t, ch.Update(ctx, func(s *channel.State) {
		s.Balances[0][0] = new(big.Int).Sub(s.Balances[0][0], big.NewInt(300))
		s.Balances[0][1] = new(big.Int).Add(s.Balances[0][1], big.NewInt(300))
	}))
	require.Eventually(t, func() bool {
		c, err := bob.Channel(ci.ChannelID)
		return err == nil && c.Version == 2
	}, 10*time.Second, 10*time.Millisecond)

	closed, err := bob.Close(ctx, ci.ChannelID)
	require.NoError(t, err)
	require.Equal(t, "closed", closed.State)
	bobShare := new(big.Int).Sub(eth(5), big.NewInt(700))
	bareShare := new(big.Int).Add(eth(5), big.NewInt(700))
	require.Equal(t, bobShare.String(), closed.Balance.Mine)
	require.Equal(t, bareShare.String(), closed.Balance.Theirs)
	st := ch.State()
	require.True(t, st.IsFinal)
	require.Equal(t, uint64(3), st.Version)
	require.Equal(t, bareShare, st.Balances[0][0])
	require.Equal(t, bobShare, st.Balances[0][1])
	// The bare client withdraws its share from the concluded channel.
	before, err := v.chain.BalanceAt(ctx, addrs[0], nil)
	require.NoError(t, err)
	require.NoError(t, ch.Settle(ctx, false))
	after, err := v.chain.BalanceAt(ctx, addrs[0], nil)
	require.NoError(t, err)
	gained := new(big.Int).Sub(after, before)
	require.Equal(t, 1, gained.Sign())
	require.True(t, gained.Cmp(bareShare) <= 0, "the bare client got at most its share (%s of %s)", gained, bareShare)
	require.True(t, new(big.Int).Sub(bareShare, gained).Cmp(big.NewInt(1e16)) < 0, "less gas only (%s of %s)", gained, bareShare)
}

// TestLegacyPeerNotListed: the same bare client without a comm.legacyPeers
// entry is refused by the peer port: its proposal fails within go-perun's
// publish attempts and bob never sees it. A proposal from bob to the bare
// client (perund's dialer insists on the bound handshake) fails with a
// peer error, not a hang.
func TestLegacyPeerNotListed(t *testing.T) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	rec, lg := newLogRecorder()
	n := v.nodeWith(t, t.TempDir(), map[string]string{keyBob: "bob"}, testNode{log: lg})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bob, err := n.OpenSession(ctx, addrs[1], "bob", false)
	require.NoError(t, err)
	aliceKey, _ := crypto.HexToECDSA(keyAlice)
	bare := newBareClient(t, v, aliceKey)
	bare.register(addrs[1], bob.CommAddress())

	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	start := time.Now()
	_, err = bare.propose(pctx, addrs[1], eth(5), eth(5))
	t.Logf("bare client's proposal: %v after %v", err, time.Since(start).Round(time.Millisecond))
	require.Error(t, err)
	require.NoError(t, pctx.Err(), "refused, not left hanging")
	require.Empty(t, bob.Proposals())
	require.Positive(t, rec.count("refused connection"))
	require.Zero(t, rec.count("accepted a legacy (replayable) handshake"))

	_, err = bob.AddContact(contacts.Contact{Alias: "bare", Address: addrs[0], CommAddress: bare.host})
	require.NoError(t, err)
	octx, ocancel := context.WithTimeout(ctx, time.Minute)
	defer ocancel()
	start = time.Now()
	_, err = bob.OpenChannel(octx, "bare", "ETH", eth(1), eth(1), 0)
	t.Logf("bob's proposal: %v after %v", err, time.Since(start).Round(time.Millisecond))
	requirePeerError(t, err)
	var pu *node.PeerUnreachableError
	require.ErrorAs(t, err, &pu)
	require.NoError(t, octx.Err(), "bounded by the node's own timeouts")
}
