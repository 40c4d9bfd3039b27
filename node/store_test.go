package node_test

import (
	"context"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"
	"polycry.pt/poly-go/sortedkv"
	"polycry.pt/poly-go/sortedkv/leveldb"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/config"
	"github.com/perund/perund/node"
	"github.com/perund/perund/store"
)

// storeBackends are the node's store backends: LevelDB in the data dir
// (no flag), and PostgreSQL in a database of its own on the package's
// test cluster (skipped where PostgreSQL is not installed, but for CI).
var storeBackends = []struct {
	name  string
	flags func(t *testing.T) map[string]any
}{
	{"leveldb", func(*testing.T) map[string]any { return nil }},
	{"postgres", func(t *testing.T) map[string]any { return map[string]any{"store.url": pg.Database(t)} }},
}

// onEachBackend runs test once per store backend with the flags of two
// nodes' stores (alice's and bob's, a store each), one backend after the
// other: the tests use alice's and bob's keys on chains of one chain id,
// whose nonces the Perun backend tracks process-wide.
func onEachBackend(t *testing.T, test func(t *testing.T, flagsA, flagsB map[string]any)) {
	for _, b := range storeBackends {
		t.Run(b.name, func(t *testing.T) { test(t, b.flags(t), b.flags(t)) })
	}
}

// twoNodes starts alice's node (flagsA) and bob's (flagsB) on v's chain,
// opens their sessions and introduces them.
func (v *env) twoNodes(ctx context.Context, t *testing.T, addrs []common.Address, flagsA, flagsB map[string]any) (na, nb *node.Node, alice, bob *node.Session) {
	t.Helper()
	na = v.nodeWith(t, t.TempDir(), map[string]string{keyAlice: "alice"}, testNode{flags: flagsA})
	nb = v.nodeWith(t, t.TempDir(), map[string]string{keyBob: "bob"}, testNode{flags: flagsB})
	alice, bob = loginPair(t, na, nb, addrs)
	return na, nb, alice, bob
}

// Both users of one node keep their channels in the node's one store: a
// session that closes leaves the store open for the other, a session
// opened again restores from it, and a restart restores both sides. On
// each backend.
func TestStoreSharedBySessions(t *testing.T) {
	for _, b := range storeBackends {
		t.Run(b.name, func(t *testing.T) { testStoreSharedBySessions(t, b.flags(t)) })
	}
}

func testStoreSharedBySessions(t *testing.T, flags map[string]any) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	dir := t.TempDir()
	users := map[string]string{keyAlice: "alice", keyBob: "bob"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := v.nodeWith(t, dir, users, testNode{flags: flags})
	alice, bob := loginPair(t, n, n, addrs)
	ci := openAccepted(ctx, t, alice, bob, eth(5), eth(5))
	p := paySeq{id: ci.ChannelID, amt: big.NewInt(3)}
	p.pay(ctx, t, alice)

	require.NoError(t, n.CloseSession(ctx, alice, true))
	alice, err := n.OpenSession(ctx, addrs[0], "alice", false)
	require.NoError(t, err, "alice's session restores from the store her closed session left open")
	got, err := alice.Channel(ci.ChannelID)
	require.NoError(t, err)
	require.Equal(t, uint64(1), got.Version)
	p.pay(ctx, t, bob) // both views persist
	p.pay(ctx, t, alice)
	require.NoError(t, n.Close(ctx))

	n = v.nodeWith(t, dir, users, testNode{flags: flags})
	list, err := n.OpenSessions(ctx, []node.Login{{Account: addrs[0], Password: "alice"}, {Account: addrs[1], Password: "bob"}})
	require.NoError(t, err)
	for _, s := range list {
		got, err := s.Channel(ci.ChannelID)
		require.NoError(t, err)
		require.Equal(t, uint64(3), got.Version, s.Address().Hex())
	}
	p.pay(ctx, t, list[1])
	require.Equal(t, uint64(4), p.version)
}

// A data dir of the old layout, one LevelDB per user, is moved into the
// node's store at start: the old databases are renamed and the channel
// comes back on both sides.
func TestLegacyDataDirMigrated(t *testing.T) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	dir := t.TempDir()
	users := map[string]string{keyAlice: "alice", keyBob: "bob"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := v.nodeIn(t, dir, users)
	alice, bob := loginPair(t, n, n, addrs)
	ci := openAccepted(ctx, t, alice, bob, eth(5), eth(5))
	_, err := alice.Send(ctx, ci.ChannelID, big.NewInt(3))
	require.NoError(t, err)
	require.NoError(t, n.Close(ctx))

	toLegacyLayout(t, dir, addrs...)

	n = v.nodeIn(t, dir, users)
	for _, a := range addrs {
		udir := filepath.Join(dir, strings.ToLower(a.Hex()))
		require.NoDirExists(t, filepath.Join(udir, store.LegacyName))
		require.DirExists(t, filepath.Join(udir, store.MigratedName))
	}
	list, err := n.OpenSessions(ctx, []node.Login{{Account: addrs[0], Password: "alice"}, {Account: addrs[1], Password: "bob"}})
	require.NoError(t, err)
	for _, s := range list {
		got, err := s.Channel(ci.ChannelID)
		require.NoError(t, err)
		require.Equal(t, uint64(1), got.Version, s.Address().Hex())
		require.Equal(t, node.StateOpen, got.State)
	}
	got, err := list[1].Send(ctx, ci.ChannelID, big.NewInt(1))
	require.NoError(t, err)
	require.Equal(t, uint64(2), got.Version)
	require.NoError(t, n.Close(ctx))

	// The channels the node would strand on other contracts are read from
	// the store.
	_, _, other, err := v.chain.Deploy(ctx)
	require.NoError(t, err)
	cfg, err := config.Load(config.Sources{Flags: map[string]any{"dataDir": dir, "keystore.lightKdf": true, "comm.listen": "127.0.0.1:0"}})
	require.NoError(t, err)
	_, err = node.New(ctx, node.Options{Config: cfg, Chain: v.chain, Contracts: other,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var mm *chain.MismatchError
	require.ErrorAs(t, err, &mm)
	var want []string
	for _, a := range addrs {
		want = append(want, strings.ToLower(a.Hex())+": "+ci.ChannelID)
	}
	require.ElementsMatch(t, want, mm.Channels)
}

// toLegacyLayout rewrites dir as earlier versions left it: each user's
// key space of the node's store becomes dir/<address>/channels.db (the
// same keys, which go-perun wrote), and the node's store is removed.
func toLegacyLayout(t *testing.T, dir string, addrs ...common.Address) {
	t.Helper()
	shared, err := leveldb.LoadDatabase(filepath.Join(dir, "channels.db"))
	require.NoError(t, err)
	for _, a := range addrs {
		hexAddr := strings.ToLower(a.Hex())
		old, err := leveldb.LoadDatabase(filepath.Join(dir, hexAddr, store.LegacyName))
		require.NoError(t, err)
		it := sortedkv.NewTable(shared, "u/"+hexAddr[2:]+"/").NewIterator()
		keys := 0
		for it.Next() {
			require.NoError(t, old.Put(it.Key(), it.Value()))
			keys++
		}
		require.NoError(t, it.Close())
		require.NotZero(t, keys, "%s has channel data", hexAddr)
		require.NoError(t, old.Close())
	}
	require.NoError(t, shared.Close())
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "channels.db")))
}
