package store

import (
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/channel/persistence/keyvalue"
	ptest "perun.network/go-perun/channel/persistence/test"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"
	wtest "perun.network/go-perun/wire/test"
	"polycry.pt/poly-go/sortedkv"
	pgleveldb "polycry.pt/poly-go/sortedkv/leveldb"
)

// legacyDB writes an old-style per-user database, dataDir/<address>/
// channels.db, as perund did before the store: go-perun's own key-value
// PersistRestorer on poly-go's LevelDB. It holds channels in every stage
// (a settled and removed one among them) and returns the channels that
// should be restored, by id, and the database's keys.
func legacyDB(ctx context.Context, t *testing.T, dataDir string, addr common.Address, rng *rand.Rand) (map[channel.ID]*ptest.Channel, map[string]string) {
	dir := filepath.Join(dataDir, strings.ToLower(addr.Hex()))
	require.NoError(t, os.MkdirAll(dir, 0o700))
	db, err := pgleveldb.LoadDatabase(filepath.Join(dir, LegacyName))
	require.NoError(t, err)
	pr := keyvalue.NewPersistRestorer(db)
	peers := func() []map[wallet.BackendID]wire.Address { return wtest.NewRandomAddressesMap(rng, 2) }
	newCh := func(parent *ptest.Channel) *ptest.Channel {
		return ptest.NewRandomChannel(ctx, t, pr, 0, peers(), parent, rng)
	}
	active := func(ch *ptest.Channel) *ptest.Channel {
		ch.Init(ctx, t, rng)
		ch.SignAll(ctx, t)
		ch.EnableInit(t)
		ch.SetFunded(t)
		return ch
	}
	update := func(ch *ptest.Channel) *channel.State {
		s := ch.State().Clone()
		s.Version++
		require.NoError(t, ch.Update(t, s, ch.Idx()))
		return s
	}
	want := map[channel.ID]*ptest.Channel{}
	keep := func(ch *ptest.Channel) { want[ch.ID()] = ch }

	keep(newCh(nil)) // proposed, not yet signed

	settled := active(newCh(nil)) // withdrawn: go-perun removes it
	update(settled)
	settled.SignAll(ctx, t)
	settled.EnableUpdate(t)
	settled.SetRegistering(t)
	settled.SetRegistered(t)
	settled.SetWithdrawing(t)
	settled.SetWithdrawn(t)

	parent := active(newCh(nil))
	keep(parent)
	keep(active(newCh(parent))) // a sub-channel

	staged := active(newCh(nil)) // an update signed by us only
	update(staged)
	_, err = staged.Sig(ctx)
	require.NoError(t, err)
	keep(staged)

	disputed := active(newCh(nil))
	disputed.SetRegistering(t)
	disputed.SetRegistered(t)
	keep(disputed)

	keys := map[string]string{}
	it := db.NewIterator()
	for it.Next() {
		keys[it.Key()] = it.Value()
	}
	require.NoError(t, it.Close())
	require.NoError(t, pr.Close())
	return want, keys
}

// spaceKeys returns the keys of addr's space, without the prefix.
func spaceKeys(t *testing.T, st Store, addr common.Address) map[string]string {
	keys := map[string]string{}
	it := sortedkv.NewTable(raw(st), userKeyPrefix(addr)).NewIterator()
	for it.Next() {
		keys[it.Key()] = it.Value()
	}
	require.NoError(t, it.Close())
	return keys
}

// Old per-user databases move into the store once, each under its user's
// prefix, byte for byte but for the key go-perun leaves of a removed
// channel; the old directory is renamed.
func TestMigrateLegacy(t *testing.T) { forEachBackend(t, testMigrateLegacy) }

func testMigrateLegacy(t *testing.T, b backend) {
	ctx := testCtx(t)
	rng := rand.New(rand.NewSource(5))
	dataDir := t.TempDir()
	alice := common.HexToAddress("0xa11ce00000000000000000000000000000000000")
	bob := common.HexToAddress("0xb0b0000000000000000000000000000000000000")
	wantA, keysA := legacyDB(ctx, t, dataDir, alice, rng)
	wantB, keysB := legacyDB(ctx, t, dataDir, bob, rng)
	// Not a user's database: ignored.
	require.NoError(t, os.MkdirAll(filepath.Join(dataDir, "keystore"), 0o700))
	require.NoError(t, os.MkdirAll(filepath.Join(dataDir, "0xc0ffee0000000000000000000000000000000000"), 0o700))

	st, err := b.open(t, b.create(t))
	require.NoError(t, err)
	moved, err := MigrateLegacy(ctx, dataDir, st)
	require.NoError(t, err)
	require.ElementsMatch(t, []common.Address{alice, bob}, moved)

	users, err := st.Users(ctx)
	require.NoError(t, err)
	require.Equal(t, []common.Address{alice, bob}, users)
	for _, u := range []struct {
		addr common.Address
		want map[channel.ID]*ptest.Channel
		keys map[string]string
	}{{alice, wantA, keysA}, {bob, wantB, keysB}} {
		dir := filepath.Join(dataDir, strings.ToLower(u.addr.Hex()))
		require.NoDirExists(t, filepath.Join(dir, LegacyName))
		require.DirExists(t, filepath.Join(dir, MigratedName))

		v := st.User(u.addr)
		require.ElementsMatch(t, keysOf(u.want), restoredIDs(ctx, t, v))
		for id, ch := range u.want {
			got, err := v.RestoreChannel(ctx, id)
			require.NoError(t, err)
			ch.RequireEqual(t, got)
		}
		// Byte for byte, less the removed channel's stray parent key.
		got := spaceKeys(t, st, u.addr)
		require.Len(t, got, len(u.keys)-1)
		for k, val := range got {
			require.Equal(t, u.keys[k], val, "key %q", k)
		}
	}

	// A second start moves nothing and keeps the data.
	moved, err = MigrateLegacy(ctx, dataDir, st)
	require.NoError(t, err)
	require.Empty(t, moved)
	require.Len(t, restoredIDs(ctx, t, st.User(alice)), len(wantA))
	require.NoError(t, st.Close())
}

// A database that cannot be read stops the migration and stays in place;
// the next start moves it.
func TestMigrateLegacyFailure(t *testing.T) { forEachBackend(t, testMigrateLegacyFailure) }

func testMigrateLegacyFailure(t *testing.T, b backend) {
	ctx := testCtx(t)
	rng := rand.New(rand.NewSource(6))
	dataDir := t.TempDir()
	alice := common.HexToAddress("0xa11ce00000000000000000000000000000000000")
	want, _ := legacyDB(ctx, t, dataDir, alice, rng)
	legacy := filepath.Join(dataDir, strings.ToLower(alice.Hex()), LegacyName)
	held, err := pgleveldb.LoadDatabase(legacy) // locked by "another process"
	require.NoError(t, err)

	st := openTestStore(t, b)
	_, err = MigrateLegacy(ctx, dataDir, st)
	require.ErrorContains(t, err, legacy)
	require.DirExists(t, legacy)
	require.NoError(t, held.Close())

	moved, err := MigrateLegacy(ctx, dataDir, st)
	require.NoError(t, err)
	require.Equal(t, []common.Address{alice}, moved)
	require.ElementsMatch(t, keysOf(want), restoredIDs(ctx, t, st.User(alice)))
}

func keysOf(m map[channel.ID]*ptest.Channel) []channel.ID {
	ids := make([]channel.ID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	return ids
}
