package contacts_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/contacts"
	"github.com/perund/perund/internal/leaktest"
	"github.com/perund/perund/internal/pgtest"
	"github.com/perund/perund/store"
)

var pg = pgtest.NewCluster()

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m, pg.Stop) }

// docStorage keeps a book in a document of the node's store, as the node
// does on PostgreSQL.
type docStorage struct {
	d   store.Docs
	key string
}

func (s docStorage) Read() ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.d.Get(ctx, s.key)
}

func (s docStorage) Write(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.d.Put(ctx, s.key, b)
}

// A book kept in a file and in PostgreSQL: what one Book writes, a Book
// opened later on the same storage (another process, after a failover)
// reads, and a bad document is refused with the book's name.
func TestStorages(t *testing.T) {
	storages := []struct {
		name string
		open func(t *testing.T) contacts.Storage
	}{
		{"file", func(t *testing.T) contacts.Storage {
			return contacts.FileStorage(filepath.Join(t.TempDir(), "u", "contacts.yaml"))
		}},
		{"postgres", func(t *testing.T) contacts.Storage {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := store.OpenPostgres(ctx, pg.Database(t), store.PostgresOptions{})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, st.Close()) })
			return docStorage{d: st.Docs(), key: "0xab/contacts.yaml"}
		}},
	}
	bob := contacts.Contact{Alias: "bob", Address: common.HexToAddress("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"), CommAddress: "127.0.0.1:5000"}
	for _, s := range storages {
		t.Run(s.name, func(t *testing.T) {
			st := s.open(t)
			b, err := contacts.Open(st, "alice's contacts")
			require.NoError(t, err)
			require.Empty(t, b.List())
			require.NoError(t, b.Add(bob))
			again, err := contacts.Open(st, "alice's contacts")
			require.NoError(t, err)
			require.Equal(t, []contacts.Contact{bob}, again.List())
			require.NoError(t, again.Remove("bob"))
			third, err := contacts.Open(st, "alice's contacts")
			require.NoError(t, err)
			require.Empty(t, third.List())

			require.NoError(t, st.Write([]byte("contacts: [{alias: x}]")))
			_, err = contacts.Open(st, "alice's contacts")
			require.ErrorContains(t, err, "alice's contacts")
		})
	}
}
