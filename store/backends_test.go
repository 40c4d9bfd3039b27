package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"polycry.pt/poly-go/sortedkv"
)

// backend opens stores of one kind for the tests, which run on each.
type backend struct {
	name string
	// create returns where a new, empty store is: a directory or the URL
	// of a new database.
	create func(t testing.TB) string
	// open opens the store at addr.
	open func(t testing.TB, addr string) (Store, error)
}

// levelDBBackend is LevelDB, with or without fsync of each write.
func levelDBBackend(sync bool) backend {
	name := "leveldb"
	if sync {
		name = "leveldb-sync"
	}
	return backend{
		name:   name,
		create: func(t testing.TB) string { return filepath.Join(t.TempDir(), "channels.db") },
		open: func(_ testing.TB, path string) (Store, error) {
			return OpenLevelDB(path, LevelDBOptions{Sync: sync})
		},
	}
}

// postgresBackend is PostgreSQL, in a database of its own per store on the
// package's cluster (skipped where PostgreSQL is not installed, but for
// CI). With page > 0 iterators read page keys per query, so that small
// tests cross pages.
func postgresBackend(page int) backend {
	return backend{
		name:   "postgres",
		create: pg.Database,
		open: func(_ testing.TB, url string) (Store, error) {
			st, err := OpenPostgres(context.Background(), url, PostgresOptions{})
			if err == nil && page > 0 {
				st.db.page = page
			}
			return st, err
		},
	}
}

// backends are the backends every store test runs on. PostgreSQL reads
// two keys per page, so that each iteration crosses pages.
func backends() []backend { return []backend{levelDBBackend(false), postgresBackend(2)} }

// forEachBackend runs f as a parallel subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b)
		})
	}
}

// openTestStore opens a new store of b; it is closed when the test ends.
func openTestStore(t testing.TB, b backend) Store {
	st, err := b.open(t, b.create(t))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return st
}

// raw returns the key-value database under st's views.
func raw(st Store) sortedkv.Database {
	return st.(interface{ kv() sortedkv.Database }).kv()
}
