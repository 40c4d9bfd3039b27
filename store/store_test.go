package store

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
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

// A user's view passes go-perun's own PersistRestorer test beside another
// user's data, on each backend and on LevelDB with synchronous writes.
func TestUserViewGeneric(t *testing.T) {
	for _, b := range append(backends(), levelDBBackend(true)) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			st := openTestStore(t, b)
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
func TestUserSpacesIsolated(t *testing.T) { forEachBackend(t, testUserSpacesIsolated) }

func testUserSpacesIsolated(t *testing.T, b backend) {
	ctx := testCtx(t)
	st := openTestStore(t, b)
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
func TestCloseSemantics(t *testing.T) { forEachBackend(t, testCloseSemantics) }

func testCloseSemantics(t *testing.T, bk backend) {
	ctx := testCtx(t)
	st, err := bk.open(t, bk.create(t))
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

// The store is locked: a second node on the same data dir or database is
// refused at once; once the first closed, the store opens again.
func TestOpenLocked(t *testing.T) { forEachBackend(t, testOpenLocked) }

func testOpenLocked(t *testing.T, b backend) {
	addr := b.create(t)
	st, err := b.open(t, addr)
	require.NoError(t, err)
	_, err = b.open(t, addr)
	require.Error(t, err)
	require.NoError(t, st.Close())
	st, err = b.open(t, addr)
	require.NoError(t, err, "the lock is released at close")
	require.NoError(t, st.Close())
}

// Users lists the users with data, in order, once each; a user whose
// channels are all removed is no longer listed.
func TestUsers(t *testing.T) { forEachBackend(t, testUsers) }

func testUsers(t *testing.T, bk backend) {
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
			st := openTestStore(t, bk)
			for u, n := range tc.chans {
				for range n {
					newChannel(ctx, t, rng, st.User(u))
				}
			}
			// Keys outside the user spaces are not users.
			require.NoError(t, raw(st).Put("meta/version", "1"))
			require.NoError(t, raw(st).Put("v", "1"))
			require.NoError(t, raw(st).Put("u", "1"))
			require.NoError(t, raw(st).Put("u0", "1"))
			got, err := st.Users(ctx)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}

	t.Run("removed", func(t *testing.T) {
		st := openTestStore(t, bk)
		ch := newChannel(ctx, t, rng, st.User(a))
		newChannel(ctx, t, rng, st.User(b))
		require.NoError(t, st.User(a).ChannelRemoved(ctx, ch.ID()))
		got, err := st.Users(ctx)
		require.NoError(t, err)
		require.Equal(t, []common.Address{b}, got)
	})

	t.Run("cancelled", func(t *testing.T) {
		st := openTestStore(t, bk)
		newChannel(ctx, t, rng, st.User(a))
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := st.Users(cctx)
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("foreign key", func(t *testing.T) {
		st := openTestStore(t, bk)
		require.NoError(t, raw(st).Put("u/nothex/x", "1"))
		_, err := st.Users(ctx)
		require.Error(t, err)
	})
}

// A removed channel hides no other channel from RestoreAll (go-perun
// v0.15.0 leaves its parent key behind) and leaves no key in its user's
// space; parent keys that go-perun left earlier are skipped.
func TestRemovedChannel(t *testing.T) { forEachBackend(t, testRemovedChannel) }

func testRemovedChannel(t *testing.T, b backend) {
	ctx := testCtx(t)
	st := openTestStore(t, b)
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
	require.NoError(t, sortedkv.NewTable(raw(st), userKeyPrefix(alice)).Put(chanTable+string(stray[:])+":parent", "\x00"))
	require.ElementsMatch(t, kept, restoredIDs(ctx, t, v))

	for _, id := range kept {
		require.NoError(t, v.ChannelRemoved(ctx, id))
	}
	require.Equal(t, map[string]string{chanTable + string(stray[:]) + ":parent": "\x00"}, spaceKeys(t, st, alice))
}

// TestRecords: records are kept per user, listed by prefix in key order,
// replaced by a second put, survive a reopen and are invisible to
// go-perun's channel iteration.
func TestRecords(t *testing.T) { forEachBackend(t, testRecords) }

func testRecords(t *testing.T, b backend) {
	path := b.create(t)
	st, err := b.open(t, path)
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

	st, err = b.open(t, path)
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()
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

// The key-value database under the views orders keys byte by byte, bytes
// 0x00 and 0xff included, and iterates ranges and prefixes as LevelDB
// does.
func TestIteratorOrder(t *testing.T) { forEachBackend(t, testIteratorOrder) }

func testIteratorOrder(t *testing.T, b backend) {
	st := openTestStore(t, b)
	db := raw(st)
	rng := rand.New(rand.NewSource(9))
	keys := []string{"a", "a\x00", "a\x00\x00", "a\x01", "a\xff", "a\xff\xff", "b", "\x00", "\xff", "ab", "aB"}
	for range 40 {
		k := make([]byte, 1+rng.Intn(4))
		for i := range k {
			k[i] = []byte{0, 1, 'a', 'b', 0x7f, 0x80, 0xfe, 0xff}[rng.Intn(8)]
		}
		keys = append(keys, string(k))
	}
	model := map[string]string{}
	for i, k := range keys {
		v := fmt.Sprint(i)
		require.NoError(t, db.Put(k, v))
		model[k] = v
	}
	want := func(in func(string) bool) (out []string) {
		for k := range model {
			if in(k) {
				out = append(out, k)
			}
		}
		sort.Strings(out)
		return out
	}
	got := func(it sortedkv.Iterator) (out []string) {
		for it.Next() {
			require.Equal(t, model[it.Key()], it.Value(), "value of %q", it.Key())
			out = append(out, it.Key())
		}
		require.NoError(t, it.Close())
		require.False(t, it.Next(), "a closed iterator is done")
		return out
	}
	all := func(string) bool { return true }
	require.Equal(t, want(all), got(db.NewIterator()))
	for _, p := range []string{"a", "a\x00", "a\xff", "\xff", "c"} {
		require.Equal(t, want(func(k string) bool { return strings.HasPrefix(k, p) }), got(db.NewIteratorWithPrefix(p)), "prefix %q", p)
	}
	for _, r := range [][2]string{{"a", "b"}, {"a\x00", "a\xff"}, {"", "a"}, {"b", ""}, {"\x00", "\x01"}} {
		require.Equal(t, want(func(k string) bool { return k >= r[0] && (r[1] == "" || k < r[1]) }), got(db.NewIteratorWithRange(r[0], r[1])), "range %q", r)
	}
}
