package store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"
	"polycry.pt/poly-go/sortedkv"
	pgleveldb "polycry.pt/poly-go/sortedkv/leveldb"
)

// The key layout: every key of a user starts with userSpace, the user's
// address in 40 lowercase hex digits and a slash. The prefix has a fixed
// length and ends in a character that is not a hex digit, so that no
// user's prefix is a prefix of another's.
const (
	userSpace  = "u/"
	userPrefix = len(userSpace) + 2*common.AddressLength + 1
)

// userKeyPrefix returns the prefix of addr's key space.
func userKeyPrefix(addr common.Address) string {
	return userSpace + hex.EncodeToString(addr[:]) + "/"
}

// LevelDBOptions configure a LevelDB store.
type LevelDBOptions struct {
	// Sync makes every write (each batch go-perun applies) wait for an
	// fsync, so that a state the node acknowledged survives a power loss or
	// a kernel crash, not only a crash of perund. Without it a write is in
	// the OS page cache when it returns.
	Sync bool
}

// LevelDB is the Store on one LevelDB database.
type LevelDB struct {
	raw *leveldb.DB
	db  sortedkv.Database
}

var _ Store = (*LevelDB)(nil)

// OpenLevelDB opens (or creates) the LevelDB database in the directory
// path. It fails at once when another process holds the database.
func OpenLevelDB(path string, o LevelDBOptions) (*LevelDB, error) {
	raw, err := leveldb.OpenFile(path, nil)
	if err != nil {
		return nil, fmt.Errorf("open channel store %s: %w", path, err)
	}
	var wo *opt.WriteOptions
	if o.Sync {
		wo = &opt.WriteOptions{Sync: true}
	}
	return &LevelDB{raw: raw, db: &kvDB{Database: &pgleveldb.Database{DB: raw}, wo: wo}}, nil
}

// User returns addr's view: go-perun's key-value PersistRestorer over the
// user's key space (with the repairs of kvView).
func (s *LevelDB) User(addr common.Address) View {
	return newKVView(noClose{sortedkv.NewTable(s.db, userKeyPrefix(addr))})
}

// Users lists the users with data. It reads one key per user: after a
// user's first key it seeks past the user's key space.
func (s *LevelDB) Users(ctx context.Context) ([]common.Address, error) {
	var out []common.Address
	rng := util.BytesPrefix([]byte(userSpace))
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("list the store's users: %w", err)
		}
		it := s.raw.NewIterator(rng, nil)
		ok := it.Next()
		var k string
		if ok {
			k = string(it.Key())
		}
		it.Release()
		if err := it.Error(); err != nil {
			return nil, fmt.Errorf("list the store's users: %w", err)
		}
		if !ok {
			return out, nil
		}
		addr, err := parseUserKey(k)
		if err != nil {
			return nil, fmt.Errorf("list the store's users: %w", err)
		}
		out = append(out, addr)
		// The next key after addr's space: its prefix ends in '/', and
		// '0' follows '/'.
		next := []byte(k[:userPrefix])
		next[userPrefix-1]++
		rng.Start = next
	}
}

// parseUserKey returns the user whose key space holds k.
func parseUserKey(k string) (common.Address, error) {
	if len(k) < userPrefix || !strings.HasPrefix(k, userSpace) || k[userPrefix-1] != '/' {
		return common.Address{}, fmt.Errorf("key %q is outside every user's space", k)
	}
	h := k[len(userSpace) : userPrefix-1]
	b, err := hex.DecodeString(h)
	if err != nil || strings.ToLower(h) != h {
		return common.Address{}, fmt.Errorf("key %q is outside every user's space", k)
	}
	return common.BytesToAddress(b), nil
}

// Close closes the database; closing it again does nothing.
func (s *LevelDB) Close() error {
	if err := s.raw.Close(); err != nil && !errors.Is(err, leveldb.ErrClosed) {
		return fmt.Errorf("close channel store: %w", err)
	}
	return nil
}

// noClose is a view whose Close leaves the shared database open:
// sortedkv's table forwards Close to the database it wraps, and go-perun's
// PersistRestorer.Close calls it.
type noClose struct{ sortedkv.Database }

// Close does nothing.
func (noClose) Close() error { return nil }

// kvDB is poly-go's LevelDB adapter with the store's write options: poly-go
// writes with nil options (no fsync).
type kvDB struct {
	*pgleveldb.Database
	wo *opt.WriteOptions
}

// Put inserts or overwrites key.
func (d *kvDB) Put(key, value string) error { return d.PutBytes(key, []byte(value)) }

// PutBytes inserts or overwrites key.
func (d *kvDB) PutBytes(key string, value []byte) error {
	if err := d.DB.Put([]byte(key), value, d.wo); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	return nil
}

// Delete removes key; like poly-go's adapter, it fails if key is missing.
func (d *kvDB) Delete(key string) error {
	has, err := d.DB.Has([]byte(key), nil)
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	if !has {
		return fmt.Errorf("delete %q: %w", key, errNotFound)
	}
	if err := d.DB.Delete([]byte(key), d.wo); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	return nil
}

// NewBatch returns a batch that is written with the store's options.
func (d *kvDB) NewBatch() sortedkv.Batch { return &kvBatch{db: d.DB, wo: d.wo} }

// Close closes the database.
func (d *kvDB) Close() error { return d.DB.Close() }

var errNotFound = errors.New("key not found")

// kvBatch is a LevelDB batch applied with the store's write options.
type kvBatch struct {
	b  leveldb.Batch
	db *leveldb.DB
	wo *opt.WriteOptions
}

// Put adds a put of key.
func (b *kvBatch) Put(key, value string) error { return b.PutBytes(key, []byte(value)) }

// PutBytes adds a put of key.
func (b *kvBatch) PutBytes(key string, value []byte) error {
	b.b.Put([]byte(key), value)
	return nil
}

// Delete adds a delete of key.
func (b *kvBatch) Delete(key string) error {
	b.b.Delete([]byte(key))
	return nil
}

// Apply writes the batch atomically.
func (b *kvBatch) Apply() error {
	if err := b.db.Write(&b.b, b.wo); err != nil {
		return fmt.Errorf("apply batch: %w", err)
	}
	return nil
}

// Reset empties the batch.
func (b *kvBatch) Reset() { b.b.Reset() }

// kv returns the key-value database under the views.
func (s *LevelDB) kv() sortedkv.Database { return s.db }
