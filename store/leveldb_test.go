package store

import (
	"context"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"
	_ "perun.network/go-perun/backend/sim" // the channels' test backend
	"perun.network/go-perun/channel"
	"perun.network/go-perun/channel/persistence"
	ptest "perun.network/go-perun/channel/persistence/test"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"
	wtest "perun.network/go-perun/wire/test"
	"polycry.pt/poly-go/sortedkv"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// openTestStore opens a LevelDB store in a fresh directory; it is closed
// when the test ends.
func openTestStore(t testing.TB, o LevelDBOptions) *LevelDB {
	st, err := OpenLevelDB(filepath.Join(t.TempDir(), "channels.db"), o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return st
}

// newChannel persists a random two-party channel through pr.
func newChannel(ctx context.Context, t testing.TB, rng *rand.Rand, pr persistence.PersistRestorer) *ptest.Channel {
	peers := wtest.NewRandomAddressesMap(rng, 2)
	return ptest.NewRandomChannel(ctx, t, pr, 0, []map[wallet.BackendID]wire.Address(peers), nil, rng)
}

// restoredIDs lists the ids RestoreAll finds in pr.
func restoredIDs(ctx context.Context, t *testing.T, pr View) []channel.ID {
	it, err := pr.RestoreAll()
	require.NoError(t, err)
	var ids []channel.ID
	for it.Next(ctx) {
		ids = append(ids, it.Channel().ID())
	}
	require.NoError(t, it.Close())
	return ids
}

// A user's view passes go-perun's own PersistRestorer test, with and
// without synchronous writes, beside another user's data.
func TestUserViewGeneric(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(map[bool]string{false: "nosync", true: "sync"}[sync], func(t *testing.T) {
			ctx := testCtx(t)
			st := openTestStore(t, LevelDBOptions{Sync: sync})
			rng := rand.New(rand.NewSource(1))
			other := st.User(common.HexToAddress("0x01"))
			newChannel(ctx, t, rng, other)
			ptest.GenericPersistRestorerTest(ctx, t, rng, st.User(common.HexToAddress("0x02")), 2, 4)
			require.Len(t, restoredIDs(ctx, t, other), 1, "the other user's channel is untouched")
		})
	}
}

// One user's RestoreAll, RestoreChannel and ActivePeers see only that
// user's channels, also for addresses whose hex forms share a prefix.
func TestUserSpacesIsolated(t *testing.T) {
	ctx := testCtx(t)
	st := openTestStore(t, LevelDBOptions{})
	rng := rand.New(rand.NewSource(2))
	users := []common.Address{
		common.HexToAddress("0xab00000000000000000000000000000000000000"),
		common.HexToAddress("0xab00000000000000000000000000000000000001"),
		common.HexToAddress("0xab00000000000000000000000000000000000010"),
		common.HexToAddress("0xab"),
	}
	chans := map[common.Address][]channel.ID{}
	for i, u := range users {
		for range i + 1 {
			chans[u] = append(chans[u], newChannel(ctx, t, rng, st.User(u)).ID())
		}
	}
	for i, u := range users {
		pr := st.User(u)
		require.ElementsMatch(t, chans[u], restoredIDs(ctx, t, pr), "user %d", i)
		peers, err := pr.ActivePeers(ctx)
		require.NoError(t, err)
		require.Len(t, peers, 2*(i+1), "user %d: two peers per channel", i)
		for _, v := range users {
			if v == u {
				continue
			}
			_, err := pr.RestoreChannel(ctx, chans[v][0])
			require.Error(t, err, "user %d restores a channel of %s", i, v.Hex())
		}
	}
}

// Closing a view leaves the store open for every other view; closing the
// store makes views fail instead of panicking, and closing it again does
// nothing.
func TestCloseSemantics(t *testing.T) {
	ctx := testCtx(t)
	st, err := OpenLevelDB(filepath.Join(t.TempDir(), "channels.db"), LevelDBOptions{})
	require.NoError(t, err)
	rng := rand.New(rand.NewSource(3))
	alice, bob := common.HexToAddress("0xa1"), common.HexToAddress("0xb0")

	a := st.User(alice)
	ch := newChannel(ctx, t, rng, a)
	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "a view closes twice")

	b := st.User(bob)
	newChannel(ctx, t, rng, b) // persists and restores (AssertPersisted)
	require.Len(t, restoredIDs(ctx, t, b), 1)
	a2 := st.User(alice)
	got, err := a2.RestoreChannel(ctx, ch.ID())
	require.NoError(t, err, "alice's channel outlives her closed view")
	ch.RequireEqual(t, got)

	require.NoError(t, st.Close())
	require.NoError(t, st.Close(), "the store closes twice")
	_, err = a2.RestoreChannel(ctx, ch.ID())
	require.Error(t, err)
	require.Error(t, b.ChannelCreated(ctx, ch, nil, nil))
}

// The store's directory is locked: a second node on the same data dir is
// refused at once.
func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "channels.db")
	st, err := OpenLevelDB(path, LevelDBOptions{})
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()
	_, err = OpenLevelDB(path, LevelDBOptions{})
	require.Error(t, err)
}

// Users lists the users with data, in order, once each; a user whose
// channels are all removed is no longer listed.
func TestUsers(t *testing.T) {
	ctx := testCtx(t)
	rng := rand.New(rand.NewSource(4))
	a := common.HexToAddress("0x0a")
	b := common.HexToAddress("0xb0")
	c := common.HexToAddress("0xffffffffffffffffffffffffffffffffffffffff")
	z := common.Address{}
	tests := []struct {
		name  string
		chans map[common.Address]int
		want  []common.Address
	}{
		{"empty", nil, nil},
		{"one", map[common.Address]int{b: 1}, []common.Address{b}},
		{"ordered", map[common.Address]int{c: 1, b: 3, a: 2, z: 1}, []common.Address{z, a, b, c}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := openTestStore(t, LevelDBOptions{})
			for u, n := range tc.chans {
				for range n {
					newChannel(ctx, t, rng, st.User(u))
				}
			}
			// Keys outside the user spaces are not users.
			require.NoError(t, st.db.Put("meta/version", "1"))
			require.NoError(t, st.db.Put("v", "1"))
			got, err := st.Users(ctx)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}

	t.Run("removed", func(t *testing.T) {
		st := openTestStore(t, LevelDBOptions{})
		ch := newChannel(ctx, t, rng, st.User(a))
		newChannel(ctx, t, rng, st.User(b))
		require.NoError(t, st.User(a).ChannelRemoved(ctx, ch.ID()))
		got, err := st.Users(ctx)
		require.NoError(t, err)
		require.Equal(t, []common.Address{b}, got)
	})

	t.Run("cancelled", func(t *testing.T) {
		st := openTestStore(t, LevelDBOptions{})
		newChannel(ctx, t, rng, st.User(a))
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := st.Users(cctx)
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("foreign key", func(t *testing.T) {
		st := openTestStore(t, LevelDBOptions{})
		require.NoError(t, st.db.Put("u/nothex/x", "1"))
		_, err := st.Users(ctx)
		require.Error(t, err)
	})
}

// A removed channel hides no other channel from RestoreAll (go-perun
// v0.15.0 leaves its parent key behind) and leaves no key in its user's
// space; parent keys that go-perun left earlier are skipped.
func TestRemovedChannel(t *testing.T) {
	ctx := testCtx(t)
	st := openTestStore(t, LevelDBOptions{})
	rng := rand.New(rand.NewSource(7))
	alice := common.HexToAddress("0xa1")
	v := st.User(alice)
	var kept []channel.ID
	for i := range 6 {
		ch := newChannel(ctx, t, rng, v)
		if i%2 == 1 {
			kept = append(kept, ch.ID())
			continue
		}
		require.NoError(t, v.ChannelRemoved(ctx, ch.ID()))
	}
	require.ElementsMatch(t, kept, restoredIDs(ctx, t, v))

	// What go-perun alone leaves: a lone parent key, sorting first.
	var stray channel.ID
	require.NoError(t, sortedkv.NewTable(st.db, userKeyPrefix(alice)).Put(chanTable+string(stray[:])+":parent", "\x00"))
	require.ElementsMatch(t, kept, restoredIDs(ctx, t, v))

	for _, id := range kept {
		require.NoError(t, v.ChannelRemoved(ctx, id))
	}
	require.Equal(t, map[string]string{chanTable + string(stray[:]) + ":parent": "\x00"}, spaceKeys(t, st, alice))
}

// TestRecords: records are kept per user, listed by prefix in key order,
// replaced by a second put, survive a reopen and are invisible to
// go-perun's channel iteration.
func TestRecords(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "channels.db")
	st, err := OpenLevelDB(path, LevelDBOptions{})
	require.NoError(t, err)
	alice, bob := common.HexToAddress("0x01"), common.HexToAddress("0x02")
	va, vb := st.User(alice), st.User(bob)
	for _, kv := range []struct{ k, v string }{
		{"dispute/2/x", "second"}, {"dispute/1/x", "first"}, {"other/1", "other"}, {"dispute/1/x", "first, replaced"},
	} {
		require.NoError(t, va.PutRecord(kv.k, []byte(kv.v)))
	}
	require.NoError(t, vb.PutRecord("dispute/9/y", []byte("bob's")))
	it, err := va.RestoreAll()
	require.NoError(t, err)
	require.False(t, it.Next(testCtx(t)), "records are no channels")
	require.NoError(t, it.Close())
	require.NoError(t, st.Close())

	st, err = OpenLevelDB(path, LevelDBOptions{})
	require.NoError(t, err)
	defer st.Close()
	for _, tc := range []struct {
		user   common.Address
		prefix string
		want   []Record
	}{
		{alice, "dispute/", []Record{{"dispute/1/x", []byte("first, replaced")}, {"dispute/2/x", []byte("second")}}},
		{alice, "other/", []Record{{"other/1", []byte("other")}}},
		{alice, "none/", nil},
		{bob, "", []Record{{"dispute/9/y", []byte("bob's")}}},
	} {
		got, err := st.User(tc.user).Records(tc.prefix)
		require.NoError(t, err)
		require.Equal(t, tc.want, got, "%s %q", tc.user.Hex(), tc.prefix)
	}
}
