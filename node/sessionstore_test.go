package node_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/node"
)

// Sessions come back after the node stops, on each backend: on LevelDB
// from the same data dir (a restart), on PostgreSQL in a node with a new,
// empty data dir (another machine after a failover): everything but the
// keystore comes from the database. alice's password is in
// sessions.passwordDir, so her session comes back with its id and token
// (on PostgreSQL with her key file, which the first node put into the
// database)
// (session_resume works), with her contacts and channel metadata; bob's
// is not, so resuming his session says to log in again, and he does. The
// stored records hold the tokens' hashes, never the tokens. Payments go on.
func TestSessionsComeBack(t *testing.T) {
	for _, b := range storeBackends {
		t.Run(b.name, func(t *testing.T) { testSessionsComeBack(t, b.name, b.flags(t)) })
	}
}

func testSessionsComeBack(t *testing.T, backend string, flags map[string]any) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	users := map[string]string{keyAlice: "alice", keyBob: "bob"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pwDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(pwDir, strings.ToLower(addrs[0].Hex())), []byte("alice\n"), 0o600))
	all := map[string]any{"sessions.passwordDir": pwDir}
	for k, val := range flags {
		all[k] = val
	}
	dir := t.TempDir()
	n := v.nodeWith(t, dir, users, testNode{flags: all})
	alice, bob := loginPair(t, n, n, addrs)
	ci := openAccepted(ctx, t, alice, bob, eth(5), eth(5))
	_, err := alice.Send(ctx, ci.ChannelID, eth(1))
	require.NoError(t, err)
	ai, bi := alice.Info(true), bob.Info(true)
	require.NotEmpty(t, ai.Token)
	require.NoError(t, n.Close(ctx))

	for _, rec := range storedRecords(ctx, t, backend, dir, all) {
		require.NotContains(t, rec, ai.Token[2:], "a stored record holds a token")
		require.NotContains(t, rec, bi.Token[2:], "a stored record holds a token")
	}

	if backend != "leveldb" {
		// Another machine: only the database is shared, with the key
		// files that the first node copied into it.
		dir, users = t.TempDir(), nil
	}
	n = v.nodeWith(t, dir, users, testNode{flags: all})
	back, err := n.RestoreSessions(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, back, "alice's session, whose password the node has")

	s, err := n.ResumeSession(ai.SessionID, ai.Token)
	require.NoError(t, err, "alice resumes her session after the restart")
	got, err := s.Channel(ci.ChannelID)
	require.NoError(t, err)
	require.Equal(t, uint64(1), got.Version)
	require.False(t, got.OpenedAt.IsZero(), "the channel's metadata came back")
	_, err = s.Contacts().Get("bob")
	require.NoError(t, err, "her contacts came back")

	_, err = n.ResumeSession(ai.SessionID, bi.Token)
	require.ErrorIs(t, err, node.ErrUnauthorized, "a wrong token")
	_, err = n.ResumeSession(bi.SessionID, bi.Token)
	require.ErrorIs(t, err, node.ErrUnauthorized)
	require.ErrorContains(t, err, "log in again")

	bob, err = n.OpenSession(ctx, addrs[1], "bob", false)
	require.NoError(t, err)
	require.NotEqual(t, bi.SessionID, bob.ID(), "a new login is a new session")
	again, err := n.OpenSession(ctx, addrs[0], "alice", false)
	require.NoError(t, err)
	require.Equal(t, ai.SessionID, again.ID(), "logging in attaches to the restored session")
	require.NotEmpty(t, again.Info(true).Token, "with a new token (the old one is only known hashed)")

	after, err := s.Send(ctx, ci.ChannelID, eth(1))
	require.NoError(t, err)
	require.Equal(t, uint64(2), after.Version)
	require.Eventually(t, func() bool {
		bs, err := bob.Channel(ci.ChannelID)
		return err == nil && bs.Version == 2
	}, 30*time.Second, 10*time.Millisecond, "bob has the payment")
}

// storedRecords returns the stored session records as text.
func storedRecords(ctx context.Context, t *testing.T, backend, dir string, flags map[string]any) []string {
	var out []string
	if backend == "leveldb" {
		files, err := filepath.Glob(filepath.Join(dir, "sessions", "*.json"))
		require.NoError(t, err)
		for _, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			out = append(out, string(b))
		}
	} else {
		c, err := pgx.Connect(ctx, flags["store.url"].(string))
		require.NoError(t, err)
		defer c.Close(context.Background())
		rows, err := c.Query(ctx, `SELECT convert_from(value, 'UTF8') FROM docs WHERE key LIKE 'sessions/%'`)
		require.NoError(t, err)
		for rows.Next() {
			var s string
			require.NoError(t, rows.Scan(&s))
			out = append(out, s)
		}
		require.NoError(t, rows.Err())
	}
	require.Len(t, out, 2, "a record per open session")
	return out
}
