package store

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"perun.network/go-perun/channel"
	"polycry.pt/poly-go/sortedkv"
)

// Combined writes. go-perun persists an off-chain update in four writes
// per party, each one committed batch: Staged (the proposed state), a
// SigAdded per signature and Enabled (the new current state, which
// rewrites the staged state, every signature and the phase). On
// PostgreSQL each is a transaction and a round trip, and with store.sync
// each is an fsync. Only two moments need a write to be durable:
//
//   - before this party sends the signature that completes a state (the
//     responder of an update, once it has signed a state the proposer
//     signed already): the peer can then enforce that state, so this
//     party must be able to, too;
//   - when a state becomes current (Enabled).
//
// The other writes (Staged; a signature that does not complete the state,
// such as a proposer's own before it sends the proposal; the proposer's
// receipt of the last signature, which Enabled follows at once) are held
// in memory and committed with the next write of the same channel, in the
// same batch and in their order. A crash loses them as it would have lost
// a write not yet made: the proposer's own signature on a state it
// proposed is only its promise (the state moves funds away from it), and
// the peer's node, or perund's sync at login, has the state if it was
// completed. The responder of an update now commits once before sending
// its signature and once when enabling, the proposer once: three
// transactions per update instead of eight.

// combiner is sortedkv.Database over db that holds back the writes of a
// channel marked deferring and commits them with the channel's next
// write. Reads commit whatever is held back first.
type combiner struct {
	sortedkv.Database
	mu sync.Mutex
	// deferring marks the channels whose next batch is held back.
	deferring map[channel.ID]bool
	// held are the held-back writes of each channel, oldest first.
	held map[channel.ID][]kvPut
}

type kvPut struct {
	key   string
	value []byte
}

func newCombiner(db sortedkv.Database) *combiner {
	return &combiner{Database: db, deferring: map[channel.ID]bool{}, held: map[channel.ID][]kvPut{}}
}

// deferNext runs write with id's batches held back.
func (c *combiner) deferNext(id channel.ID, write func() error) error {
	c.mu.Lock()
	c.deferring[id] = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.deferring, id)
		c.mu.Unlock()
	}()
	return write()
}

// channelOf is the channel a go-perun key belongs to.
func channelOf(key string) (channel.ID, bool) {
	var id channel.ID
	if len(key) < chanFields || !strings.HasPrefix(key, chanTable) || key[chanFields-1] != ':' {
		return id, false
	}
	copy(id[:], key[len(chanTable):])
	return id, true
}

// NewBatch returns a batch that may be held back.
func (c *combiner) NewBatch() sortedkv.Batch { return &combBatch{c: c} }

// Put writes key with what is held back of its channel.
func (c *combiner) Put(key, value string) error { return c.PutBytes(key, []byte(value)) }

// PutBytes writes key with what is held back of its channel.
func (c *combiner) PutBytes(key string, value []byte) error {
	b := c.NewBatch()
	if err := b.PutBytes(key, value); err != nil {
		return err
	}
	return b.Apply()
}

// Delete deletes key with what is held back of its channel written first.
func (c *combiner) Delete(key string) error {
	if err := c.flush(); err != nil {
		return err
	}
	return c.Database.Delete(key) //nolint:wrapcheck // the database's error, as the interface returns it
}

// Has commits what is held back and reads.
func (c *combiner) Has(key string) (bool, error) {
	if err := c.flush(); err != nil {
		return false, err
	}
	return c.Database.Has(key) //nolint:wrapcheck // as the interface returns it
}

// Get commits what is held back and reads.
func (c *combiner) Get(key string) (string, error) {
	if err := c.flush(); err != nil {
		return "", err
	}
	return c.Database.Get(key) //nolint:wrapcheck // as the interface returns it
}

// GetBytes commits what is held back and reads.
func (c *combiner) GetBytes(key string) ([]byte, error) {
	if err := c.flush(); err != nil {
		return nil, err
	}
	return c.Database.GetBytes(key) //nolint:wrapcheck // as the interface returns it
}

// NewIterator commits what is held back and iterates.
func (c *combiner) NewIterator() sortedkv.Iterator {
	return c.iterate(func() sortedkv.Iterator { return c.Database.NewIterator() })
}

// NewIteratorWithRange commits what is held back and iterates.
func (c *combiner) NewIteratorWithRange(start, end string) sortedkv.Iterator {
	return c.iterate(func() sortedkv.Iterator { return c.Database.NewIteratorWithRange(start, end) })
}

// NewIteratorWithPrefix commits what is held back and iterates.
func (c *combiner) NewIteratorWithPrefix(prefix string) sortedkv.Iterator {
	return c.iterate(func() sortedkv.Iterator { return c.Database.NewIteratorWithPrefix(prefix) })
}

func (c *combiner) iterate(open func() sortedkv.Iterator) sortedkv.Iterator {
	if err := c.flush(); err != nil {
		return &failedIterator{err: err}
	}
	return open()
}

// flush commits every held-back write.
func (c *combiner) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) == 0 {
		return nil
	}
	b := c.Database.NewBatch()
	for _, puts := range c.held {
		for _, p := range puts {
			if err := b.PutBytes(p.key, p.value); err != nil {
				return fmt.Errorf("write held-back %q: %w", p.key, err)
			}
		}
	}
	if err := b.Apply(); err != nil {
		return fmt.Errorf("write held-back channel data: %w", err)
	}
	clear(c.held)
	return nil
}

// Close commits what is held back and closes the database.
func (c *combiner) Close() error {
	ferr := c.flush()
	if err := c.Database.Close(); err != nil {
		return err //nolint:wrapcheck // as the interface returns it
	}
	return ferr
}

// combBatch is a batch of puts and deletes that the combiner holds back
// when all its puts are of one deferring channel.
type combBatch struct {
	c   *combiner
	ops []kvOp
}

type kvOp struct {
	kvPut
	del bool
}

func (b *combBatch) Put(key, value string) error { return b.PutBytes(key, []byte(value)) }

func (b *combBatch) PutBytes(key string, value []byte) error {
	b.ops = append(b.ops, kvOp{kvPut: kvPut{key: key, value: append([]byte(nil), value...)}})
	return nil
}

func (b *combBatch) Delete(key string) error {
	b.ops = append(b.ops, kvOp{kvPut: kvPut{key: key}, del: true})
	return nil
}

func (b *combBatch) Reset() { b.ops = b.ops[:0] }

// Apply holds the batch back (a deferring channel's puts) or commits it
// together with what is held back of the channels it writes.
func (b *combBatch) Apply() error {
	c := b.c
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := map[channel.ID]bool{}
	onlyPuts := true
	for _, op := range b.ops {
		if id, ok := channelOf(op.key); ok {
			ids[id] = true
		}
		onlyPuts = onlyPuts && !op.del
	}
	if len(ids) == 1 && onlyPuts && len(b.ops) > 0 {
		for id := range ids {
			if c.deferring[id] {
				for _, op := range b.ops {
					c.held[id] = append(c.held[id], op.kvPut)
				}
				return nil
			}
		}
	}
	inner := c.Database.NewBatch()
	for id := range ids {
		for _, p := range c.held[id] {
			if err := inner.PutBytes(p.key, p.value); err != nil {
				return fmt.Errorf("write held-back %q: %w", p.key, err)
			}
		}
	}
	for _, op := range b.ops {
		var err error
		if op.del {
			err = inner.Delete(op.key)
		} else {
			err = inner.PutBytes(op.key, op.value)
		}
		if err != nil {
			return fmt.Errorf("batch %q: %w", op.key, err)
		}
	}
	if err := inner.Apply(); err != nil {
		return err //nolint:wrapcheck // go-perun wraps it
	}
	for id := range ids {
		delete(c.held, id)
	}
	return nil
}

// failedIterator is an iterator whose opening failed.
type failedIterator struct{ err error }

func (i *failedIterator) Next() bool         { return false }
func (i *failedIterator) Key() string        { return "" }
func (i *failedIterator) Value() string      { return "" }
func (i *failedIterator) ValueBytes() []byte { return nil }
func (i *failedIterator) Close() error       { return i.err }

// Staged holds the staged state back until the channel's next write.
func (v *kvView) Staged(ctx context.Context, s channel.Source) error {
	return v.comb.deferNext(s.ID(), func() error { return v.PersistRestorer.Staged(ctx, s) })
}

// SigAdded writes a signature at once only when it is this party's and
// completes the staged state (this party is about to send it); otherwise
// it holds it back until the channel's next write.
func (v *kvView) SigAdded(ctx context.Context, s channel.Source, idx channel.Index) error {
	complete := true
	if tx := s.StagingTX(); tx.State != nil {
		for _, sig := range tx.Sigs {
			complete = complete && sig != nil
		}
	}
	if complete && idx == s.Idx() {
		return v.PersistRestorer.SigAdded(ctx, s, idx) //nolint:wrapcheck // go-perun's error, as a persister returns it
	}
	return v.comb.deferNext(s.ID(), func() error { return v.PersistRestorer.SigAdded(ctx, s, idx) })
}
