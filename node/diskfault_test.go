package node_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/contacts"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/node"
)

// tryNode starts a node on v's chain from dir and returns what node.New
// answered; a node that started is closed with the test.
func (v *env) tryNode(t *testing.T, dir string) (*node.Node, error) {
	t.Helper()
	return v.kit.TryNode(t, perundtest.NodeOptions{Dir: dir})
}

// userFile is the path of one of addr's files in the data dir dir.
func userFile(dir string, addr common.Address, name string) string {
	return filepath.Join(dir, strings.ToLower(addr.Hex()), name)
}

// blockWrites makes every write of the file at path fail until the
// returned function is called: the file is put aside and a directory
// takes its place, which no atomic write (a temporary file renamed over
// the path) can replace, not even root's. unblock puts the file back.
func blockWrites(t *testing.T, path string) (unblock func()) {
	t.Helper()
	aside := path + ".aside"
	err := os.Rename(path, aside)
	had := err == nil
	if !had {
		require.ErrorIs(t, err, os.ErrNotExist)
	}
	require.NoError(t, os.MkdirAll(filepath.Join(path, "blocked"), 0o700))
	return func() {
		require.NoError(t, os.RemoveAll(path))
		if had {
			require.NoError(t, os.Rename(aside, path))
		}
	}
}

// TestDataDirUnwritable: a node whose data dir cannot be created, or
// whose channel store cannot be opened, refuses to start and names the
// path; what is at the path is left as it was.
func TestDataDirUnwritable(t *testing.T) {
	t.Parallel()
	v, _ := newEnv(t)
	t.Run("data dir is a file", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		require.NoError(t, os.WriteFile(dir, []byte("not a directory"), 0o600))
		_, err := v.tryNode(t, dir)
		require.Error(t, err)
		require.Contains(t, err.Error(), dir)
		b, err := os.ReadFile(dir)
		require.NoError(t, err)
		require.Equal(t, "not a directory", string(b))
	})
	t.Run("channel store is a file", func(t *testing.T) {
		dir := t.TempDir()
		db := filepath.Join(dir, "channels.db")
		require.NoError(t, os.WriteFile(db, []byte("not a database"), 0o600))
		_, err := v.tryNode(t, dir)
		require.ErrorContains(t, err, "open channel store "+db)
		b, err := os.ReadFile(db)
		require.NoError(t, err)
		require.Equal(t, "not a database", string(b))
	})
}

// TestChannelStoreCorrupt: a LevelDB whose CURRENT file is damaged makes
// the node refuse to start, naming the store, instead of starting on an
// empty one; repaired, the node starts with the channel the store held.
func TestChannelStoreCorrupt(t *testing.T) {
	t.Parallel()
	keys := freshKeys(t, 2)
	v, addrs := newEnv(t, keys...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dirA := t.TempDir()
	na := v.nodeIn(t, dirA, map[string]string{keys[0]: "alice"})
	nb := v.node(t, map[string]string{keys[1]: "bob"})
	alice, bob := loginPair(t, na, nb, addrs)
	ci := openAccepted(ctx, t, alice, bob, eth(2), eth(2))
	_, err := alice.Send(ctx, ci.ChannelID, eth(1))
	require.NoError(t, err)
	require.NoError(t, na.Close(ctx))

	current := filepath.Join(dirA, "channels.db", "CURRENT")
	good, err := os.ReadFile(current)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(current, []byte("MANIFEST-999999\n"), 0o600))
	_, err = v.tryNode(t, dirA)
	require.ErrorContains(t, err, "open channel store "+filepath.Join(dirA, "channels.db"))

	require.NoError(t, os.WriteFile(current, good, 0o600))
	alice2 := perundtest.Login(t, v.nodeIn(t, dirA, nil), addrs[0], "alice")
	got, err := alice2.Channel(ci.ChannelID)
	require.NoError(t, err)
	require.Equal(t, uint64(1), got.Version)
	require.Equal(t, eth(1).String(), got.Balance.Mine)
}

// TestCorruptSessionFile: a user whose session file is damaged cannot
// log in, and is told which file; the file is not replaced by an empty
// one, and the node's other users are not affected.
func TestCorruptSessionFile(t *testing.T) {
	t.Parallel()
	keys := freshKeys(t, 2)
	v, addrs := newEnv(t, keys...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	users := map[string]string{keys[0]: "alice", keys[1]: "bob"}
	n := v.nodeIn(t, dir, users)
	for i, pw := range []string{"alice", "bob"} {
		s, err := n.OpenSession(ctx, addrs[i], pw, false)
		require.NoError(t, err)
		require.NoError(t, n.CloseSession(ctx, s, false))
	}
	require.NoError(t, n.Close(ctx))
	file := userFile(dir, addrs[0], "session.json")
	require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o700))
	const damaged = `{"channels": {"0x01": [`
	require.NoError(t, os.WriteFile(file, []byte(damaged), 0o600))

	var err error
	n = v.nodeIn(t, dir, users)
	_, err = n.OpenSession(ctx, addrs[0], "alice", false)
	require.ErrorContains(t, err, "session metadata")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, damaged, string(b), "the damaged file is kept for repair")
	_, err = n.OpenSession(ctx, addrs[1], "bob", false)
	require.NoError(t, err, "another user of the node logs in")
}

// TestSessionSaveFails: while the user's session file cannot be written,
// the node logs each failed save and goes on (the channel opens, pays and
// closes as agreed, the API shows it); the next save after the disk is
// back writes everything, so after a restart the closed channel is on
// record with its balance and how it closed.
func TestSessionSaveFails(t *testing.T) {
	t.Parallel()
	keys := freshKeys(t, 2)
	v, addrs := newEnv(t, keys...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dirA := t.TempDir()
	rec, lg := newLogRecorder()
	na := v.nodeWith(t, dirA, map[string]string{keys[0]: "alice"}, testNode{log: lg})
	nb := v.node(t, map[string]string{keys[1]: "bob"})
	alice, bob := loginPair(t, na, nb, addrs)

	unblock := blockWrites(t, userFile(dirA, addrs[0], "session.json"))
	ci := openAccepted(ctx, t, alice, bob, eth(3), eth(3))
	_, err := alice.Send(ctx, ci.ChannelID, eth(1))
	require.NoError(t, err)
	bobAgrees, err := perundtest.AcceptNext(ctx, bob, node.KindClose, 2*time.Minute)
	require.NoError(t, err)
	closed, err := alice.Close(ctx, ci.ChannelID)
	require.NoError(t, err)
	require.NoError(t, perundtest.Recv(t, bobAgrees, time.Minute, "bob agrees to the close"))
	require.Equal(t, node.StateClosed, closed.State)
	require.Positive(t, rec.count("save session metadata"), "each failed save is logged")
	got, err := alice.Channel(ci.ChannelID)
	require.NoError(t, err)
	require.Equal(t, node.StateClosed, got.State)

	unblock()
	ci2 := openAccepted(ctx, t, alice, bob, eth(1), eth(1)) // saves again
	require.NoError(t, na.Close(ctx))
	alice2 := perundtest.Login(t, v.nodeIn(t, dirA, nil), addrs[0], "alice")
	got, err = alice2.Channel(ci.ChannelID)
	require.NoError(t, err, "the closed channel is on record")
	require.Equal(t, node.StateClosed, got.State)
	require.Equal(t, "agreement", got.ClosedBy)
	require.Equal(t, eth(2).String(), got.Balance.Mine)
	require.NotEmpty(t, got.TxHashes, "with its transactions")
	open, err := alice2.Channel(ci2.ChannelID)
	require.NoError(t, err)
	require.Equal(t, node.StateOpen, open.State)
}

// TestContactsUnwritable: a contact that cannot be written is refused
// with an error naming the book, and is not in the book either (what the
// user sees is what is on disk); the contacts saved before survive a
// restart, and once the file can be written the contact is added.
func TestContactsUnwritable(t *testing.T) {
	t.Parallel()
	keys := freshKeys(t, 3)
	v, addrs := newEnv(t, keys...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	users := map[string]string{keys[0]: "alice"}
	n := v.nodeIn(t, dir, users)
	alice, err := n.OpenSession(ctx, addrs[0], "alice", false)
	require.NoError(t, err)
	carol := contacts.Contact{Alias: "carol", Address: addrs[1], CommAddress: "127.0.0.1:1"}
	dave := contacts.Contact{Alias: "dave", Address: addrs[2], CommAddress: "127.0.0.1:2"}
	_, err = alice.AddContact(carol)
	require.NoError(t, err)

	unblock := blockWrites(t, userFile(dir, addrs[0], "contacts.yaml"))
	_, err = alice.AddContact(dave)
	require.ErrorContains(t, err, "contacts")
	_, err = alice.Contacts().Get("dave")
	require.Error(t, err, "a contact that was not written is not in the book")
	_, err = alice.Contacts().Get("carol")
	require.NoError(t, err)
	require.NoError(t, n.Close(ctx))

	unblock()
	n = v.nodeIn(t, dir, users)
	alice, err = n.OpenSession(ctx, addrs[0], "alice", false)
	require.NoError(t, err)
	got, err := alice.Contacts().Get("carol")
	require.NoError(t, err)
	require.Equal(t, carol, got)
	_, err = alice.Contacts().Get("dave")
	require.Error(t, err)
	_, err = alice.AddContact(dave)
	require.NoError(t, err)
}
