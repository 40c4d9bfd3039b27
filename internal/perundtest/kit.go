package perundtest

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"io"
	"log/slog"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/config"
	"github.com/perund/perund/daemon"
	"github.com/perund/perund/node"
)

// Eth is n ether in wei.
func Eth(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), chain.Ether) }

// Chain is an embedded chain with the Perun contracts deployed (and a
// PRN token when asked for), closed with the test. It is started as
// perund assembles its embedded chain (daemon.StartEmbedded).
type Chain struct {
	*chain.Embedded
	Contracts chain.Contracts
	// Assets are the ERC20 assets deployed besides ETH (PRN).
	Assets []chain.Asset
	d      *daemon.Chain
}

// ChainOptions configure NewChain.
type ChainOptions struct {
	// Alloc funds accounts in the genesis block.
	Alloc map[common.Address]*big.Int
	// BlockInterval is the empty-block interval (default 100 ms).
	BlockInterval time.Duration
	// Token, if not empty, deploys the PRN token giving each of them
	// TokenAmount, and its asset holder.
	Token       []common.Address
	TokenAmount *big.Int
}

// NewChain starts an embedded chain and deploys the contracts; the chain
// closes with the test.
func NewChain(t testing.TB, o ChainOptions) *Chain {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := StartChain(ctx, o)
	require.NoError(t, err)
	t.Cleanup(func() { ch.Close() })
	return ch
}

// StartChain is NewChain outside a test (the load program): the caller
// closes the chain.
func StartChain(ctx context.Context, o ChainOptions) (*Chain, error) {
	d, err := daemon.StartEmbedded(ctx, daemon.EmbeddedOptions{Alloc: o.Alloc, BlockInterval: o.BlockInterval,
		TokenHolders: o.Token, TokenAmount: o.TokenAmount})
	if err != nil {
		return nil, err
	}
	return &Chain{Embedded: d.Embedded, Contracts: d.Contracts, Assets: d.Assets, d: d}, nil
}

// NodeOptions configure Chain.Node.
type NodeOptions struct {
	// Dir is the data dir (default: a new temporary one).
	Dir string
	// Flags are configuration keys over the kit's defaults (light key
	// derivation, peer port on a free loopback port).
	Flags map[string]any
	// Logger (default: none).
	Logger *slog.Logger
	// Chain is the node's chain connection (default: the Chain itself).
	Chain chain.Backend
	// Keys are imported into the node's keystore: hex private key →
	// password.
	Keys map[string]string
	// Options changes the node's options last.
	Options func(*node.Options)
}

// Config returns the configuration the kit gives a node with o (in a new
// temporary data dir unless o.Dir is set).
func (c *Chain) Config(t testing.TB, o NodeOptions) *config.Config {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	cfg, err := Configure(o)
	require.NoError(t, err)
	return cfg
}

// Configure is Config outside a test; o.Dir must be set.
func Configure(o NodeOptions) (*config.Config, error) {
	flags := map[string]any{"dataDir": o.Dir, "keystore.lightKdf": true, "comm.listen": "127.0.0.1:0"}
	for k, v := range o.Flags {
		flags[k] = v
	}
	return config.Load(config.Sources{Flags: flags})
}

// Node starts a node on the chain, closed with the test, with o's keys in
// its keystore.
func (c *Chain) Node(t testing.TB, o NodeOptions) *node.Node {
	t.Helper()
	n, err := c.TryNode(t, o)
	require.NoError(t, err)
	require.NoError(t, importKeys(n, o.Keys))
	return n
}

// importKeys imports keys (hex private key → password) into n's keystore
// where they are not yet.
func importKeys(n *node.Node, keys map[string]string) error {
	accounts := make([]daemon.Account, 0, len(keys))
	for k, pw := range keys {
		pk, err := crypto.HexToECDSA(k)
		if err != nil {
			return err
		}
		accounts = append(accounts, daemon.Account{Key: pk, Password: pw})
	}
	_, err := daemon.ImportKeys(n.Keys(), accounts)
	return err
}

// TryNode starts a node as Node does (without importing keys) and
// returns what node.New answered; a node that started closes with the
// test.
func (c *Chain) TryNode(t testing.TB, o NodeOptions) (*node.Node, error) {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := c.newNode(ctx, o)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, n.Close(ctx))
	})
	return n, nil
}

// Start is Node outside a test (o.Dir must be set): the caller closes
// the node.
func (c *Chain) Start(ctx context.Context, o NodeOptions) (*node.Node, error) {
	n, err := c.newNode(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := importKeys(n, o.Keys); err != nil {
		_ = n.Close(ctx)
		return nil, err
	}
	return n, nil
}

func (c *Chain) newNode(ctx context.Context, o NodeOptions) (*node.Node, error) {
	cfg, err := Configure(o)
	if err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	opts := c.d.NodeOptions(cfg, o.Logger)
	if o.Chain != nil {
		opts.Chain = o.Chain
	}
	if o.Options != nil {
		o.Options(&opts)
	}
	return node.New(ctx, opts)
}

// HexKey returns k in hex, as NodeOptions.Keys takes it.
func HexKey(k *ecdsa.PrivateKey) string { return hex.EncodeToString(crypto.FromECDSA(k)) }

// Login opens addr's session on n.
func Login(t testing.TB, n *node.Node, addr common.Address, password string) *node.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := n.OpenSession(ctx, addr, password, false)
	require.NoError(t, err)
	return s
}

// Introduce puts a and b in each other's contacts, as aliases (as perund
// dev introduces its demo users: daemon.Introduce).
func Introduce(t testing.TB, a *node.Session, aliasA string, b *node.Session, aliasB string) {
	t.Helper()
	require.NoError(t, daemon.Introduce(daemon.User{Session: a, Alias: aliasA}, daemon.User{Session: b, Alias: aliasB}))
}

// OpenAccepted opens an ETH channel from a to b (a contact of a), who
// accepts it (AcceptNext); it checks that both hold the channel open and
// returns a's view. challenge 0 is the node's default.
func OpenAccepted(ctx context.Context, t testing.TB, a, b *node.Session, mine, theirs *big.Int, challenge uint64) node.ChannelInfo {
	t.Helper()
	accepted, err := AcceptNext(ctx, b, Proposal, 2*time.Minute)
	require.NoError(t, err)
	peer, err := a.Contacts().ByAddress(b.Address())
	require.NoError(t, err)
	ci, err := a.OpenChannel(ctx, peer.Alias, "ETH", mine, theirs, challenge)
	require.NoError(t, err)
	require.NoError(t, Recv(t, accepted, 2*time.Minute, "the peer accepts the channel"))
	theirs2, err := b.Channel(ci.ChannelID)
	require.NoError(t, err, "the peer holds the channel")
	require.Equal(t, node.StateOpen, theirs2.State)
	return ci
}
