package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"fmt"
	"math/big"
	"net"
	"path/filepath"
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
	"perun.network/go-perun/channel/persistence/keyvalue"
	"perun.network/go-perun/client"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/watcher/local"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"
	wiresimple "perun.network/go-perun/wire/net/simple"
	"perun.network/go-perun/wire/protobuf"
	"polycry.pt/poly-go/sortedkv/leveldb"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/wireid"
)

// directClient is a bare go-perun client as an application would build
// it: the baseline perund is measured against. It uses the same transport
// (TCP+TLS, protobuf), identity, wallet and LevelDB persistence as perund.
type directClient struct {
	addr   common.Address
	wire   *wireid.Account
	client *client.Client
	bus    *wirenet.Bus
	dialer *wiresimple.Dialer
	host   string
	pr     *keyvalue.PersistRestorer
}

func newDirect(b testing.TB, e *chain.Embedded, c chain.Contracts, key *ecdsa.PrivateKey, cert tls.Certificate, dir string) *directClient {
	ctx := context.Background()
	id, _ := e.ChainID(ctx)
	addr := crypto.PubkeyToAddress(key.PublicKey)
	d := &directClient{addr: addr, wire: wireid.NewAccount(key)}
	l, err := wiresimple.NewTCPListener("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	require.NoError(b, err)
	d.host = l.Addr().(*net.TCPAddr).String()
	d.dialer = wiresimple.NewTCPDialer(5*time.Second, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec
	d.bus = wirenet.NewBus(d.wire.Map(), d.dialer, protobuf.Serializer())
	go d.bus.Listen(l)
	w := simple.NewWallet(key)
	chain.ResetNonce(id, addr)
	cb := ethchannel.NewContractBackend(e, ethchannel.MakeChainID(id), simple.NewTransactor(w, types.LatestSignerForChainID(id)), 1)
	acc := accounts.Account{Address: addr}
	funder := ethchannel.NewFunder(cb)
	asset := ethchannel.NewAsset(id, c.AssetHolderETH)
	funder.RegisterAsset(*asset, ethchannel.NewETHDepositor(100_000), acc)
	adj := ethchannel.NewAdjudicator(cb, c.Adjudicator, addr, acc, 1_000_000)
	watcher, err := local.NewWatcher(adj)
	require.NoError(b, err)
	d.client, err = client.New(wireid.NewAddress(addr).Map(), d.bus, funder, adj, map[wallet.BackendID]wallet.Wallet{ethwallet.BackendID: w}, watcher)
	require.NoError(b, err)
	db, err := leveldb.LoadDatabase(filepath.Join(dir, addr.Hex()))
	require.NoError(b, err)
	d.pr = keyvalue.NewPersistRestorer(db)
	d.client.EnablePersistence(d.pr)
	return d
}

func (d *directClient) close() {
	d.client.Close()
	d.bus.Close()
	d.pr.Close()
}

// BenchmarkGoPerunDirect: two go-perun clients, one channel, sequential
// payments; the receiver accepts every update.
func BenchmarkGoPerunDirect(b *testing.B) { directPayments(b).report(b, "") }

// directPayments makes b.N sequential payments between two bare go-perun
// clients on a chain of their own and returns their latencies.
func directPayments(b *testing.B) *latencies {
	ka, _ := crypto.HexToECDSA(keyAlice)
	kb, _ := crypto.HexToECDSA(keyBob)
	ch := newChain(b, crypto.PubkeyToAddress(ka.PublicKey), crypto.PubkeyToAddress(kb.PublicKey))
	pay := directChannel(b, ch.Embedded, ch.Contracts, ka, kb)
	lat := newLatencies(b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		err := pay()
		lat.add(time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	return lat
}

// directChannel opens a channel between two bare go-perun clients of the
// keys ka and kb (funded on e) and returns a function making one payment
// of 1 wei from the first to the second, which accepts every update.
func directChannel(b testing.TB, e *chain.Embedded, c chain.Contracts, ka, kb *ecdsa.PrivateKey) func() error {
	cert := testCert(b)
	dir := b.TempDir()
	alice := newDirect(b, e, c, ka, cert, dir)
	bob := newDirect(b, e, c, kb, cert, dir)
	b.Cleanup(func() {
		alice.close()
		bob.close()
	})
	alice.dialer.Register(wireid.NewAddress(bob.addr).Map(), bob.host)
	bobReady := make(chan *client.Channel, 1)
	go bob.client.Handle(
		client.ProposalHandlerFunc(func(p client.ChannelProposal, r *client.ProposalResponder) {
			lcp := p.(*client.LedgerChannelProposalMsg)
			ch, err := r.Accept(context.Background(), lcp.Accept(map[wallet.BackendID]wallet.Address{ethwallet.BackendID: ethwallet.AsWalletAddr(bob.addr)}, client.WithRandomNonce()))
			if err == nil {
				bobReady <- ch
			}
		}),
		client.UpdateHandlerFunc(func(_ *channel.State, _ client.ChannelUpdate, r *client.UpdateResponder) {
			_ = r.Accept(context.Background())
		}))
	go alice.client.Handle(client.ProposalHandlerFunc(func(client.ChannelProposal, *client.ProposalResponder) {}),
		client.UpdateHandlerFunc(func(_ *channel.State, _ client.ChannelUpdate, r *client.UpdateResponder) {
			_ = r.Reject(context.Background(), "")
		}))

	id, _ := e.ChainID(context.Background())
	asset := ethchannel.NewAsset(id, c.AssetHolderETH)
	alloc := channel.NewAllocation(2, []wallet.BackendID{ethwallet.BackendID}, asset)
	alloc.SetAssetBalances(asset, []channel.Bal{eth(10), eth(10)})
	prop, err := client.NewLedgerChannelProposal(100000, map[wallet.BackendID]wallet.Address{ethwallet.BackendID: ethwallet.AsWalletAddr(alice.addr)}, alloc,
		[]map[wallet.BackendID]wire.Address{wireid.NewAddress(alice.addr).Map(), wireid.NewAddress(bob.addr).Map()})
	require.NoError(b, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := alice.client.ProposeChannel(ctx, prop)
	require.NoError(b, err)
	perundtest.Recv(b, bobReady, time.Minute, "bob's channel")
	one := big.NewInt(1)
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := ch.Update(ctx, func(s *channel.State) {
			s.Balances[0][0] = new(big.Int).Sub(s.Balances[0][0], one)
			s.Balances[0][1] = new(big.Int).Add(s.Balances[0][1], one)
		}); err != nil {
			return fmt.Errorf("go-perun update: %w", err)
		}
		return nil
	}
}
