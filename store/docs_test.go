package store

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// docsBackends are the document stores the tests run on: files in a
// directory, and the docs table of a PostgreSQL store.
func docsBackends() []struct {
	name string
	open func(t *testing.T) Docs
} {
	return []struct {
		name string
		open func(t *testing.T) Docs
	}{
		{"files", func(t *testing.T) Docs { return NewFileDocs(t.TempDir()) }},
		{"postgres", func(t *testing.T) Docs {
			return openTestStore(t, postgresBackend(0)).(*Postgres).Docs()
		}},
	}
}

// Documents on each backend: a missing one is not an error, Put replaces,
// List returns the documents directly under a directory in key order (not
// those deeper down nor beside it), Delete removes and is idempotent, and
// keys that could leave the directory are refused.
func TestDocs(t *testing.T) {
	for _, b := range docsBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d := b.open(t)
			_, ok, err := d.Get(ctx, "sessions/0xab.json")
			require.NoError(t, err)
			require.False(t, ok)
			list, err := d.List(ctx, "sessions/")
			require.NoError(t, err)
			require.Empty(t, list)

			puts := []struct{ key, value string }{
				{"sessions/0xcd.json", "cd"},
				{"sessions/0xab.json", "ab-1"},
				{"sessions/0xab.json", "ab"}, // replaces
				{"sessions/deeper/x", "deep"},
				{"sessionsX", "beside"},
				{"0xab/contacts.yaml", ""},
			}
			for _, p := range puts {
				require.NoError(t, d.Put(ctx, p.key, []byte(p.value)), p.key)
			}
			v, ok, err := d.Get(ctx, "sessions/0xab.json")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "ab", string(v))
			v, ok, err = d.Get(ctx, "0xab/contacts.yaml")
			require.NoError(t, err)
			require.True(t, ok, "an empty document exists")
			require.Empty(t, v)

			list, err = d.List(ctx, "sessions/")
			require.NoError(t, err)
			require.Equal(t, []Record{{Key: "sessions/0xab.json", Value: []byte("ab")}, {Key: "sessions/0xcd.json", Value: []byte("cd")}}, list)

			require.NoError(t, d.Delete(ctx, "sessions/0xab.json"))
			require.NoError(t, d.Delete(ctx, "sessions/0xab.json"), "deleting a missing document")
			_, ok, err = d.Get(ctx, "sessions/0xab.json")
			require.NoError(t, err)
			require.False(t, ok)

			for _, bad := range []string{"", "/abs", "a/../../b", "dir/", "a//b"} {
				require.Error(t, d.Put(ctx, bad, nil), "key %q", bad)
			}
			_, err = d.List(ctx, "sessions")
			require.Error(t, err, "a directory ends in /")
		})
	}
}
