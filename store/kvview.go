package store

import (
	"context"
	"fmt"

	"perun.network/go-perun/channel"
	"perun.network/go-perun/channel/persistence"
	"perun.network/go-perun/channel/persistence/keyvalue"
	"polycry.pt/poly-go/sortedkv"
)

// go-perun's key layout in a key-value view (keyvalue/persistrestorer.go):
// a channel's fields are "Chan:" + the 32 id bytes + ":" + field name.
const (
	chanTable  = "Chan:"
	chanFields = len(chanTable) + len(channel.ID{}) + 1
)

// kvView is go-perun's key-value PersistRestorer over one user's key
// space, with two repairs for go-perun v0.15.0:
//
//   - ChannelRemoved leaves the channel's "parent" key behind. The next
//     RestoreAll decodes that key as the first field of a channel and
//     fails ("decoding index: ... unexpected EOF"), so one settled channel
//     hid every channel after it. kvView deletes the key as well.
//   - RestoreAll restores each channel that has a current state by its
//     id, so that the keys earlier versions left behind are skipped.
//
// Its writes go through a combiner (combine.go), which commits the writes
// of an update that need not be durable on their own with the next one.
type kvView struct {
	*keyvalue.PersistRestorer
	db   sortedkv.Database
	comb *combiner
}

var _ View = (*kvView)(nil)

func newKVView(db sortedkv.Database) *kvView {
	comb := newCombiner(db)
	return &kvView{PersistRestorer: keyvalue.NewPersistRestorer(comb), db: comb, comb: comb}
}

// recTable is the key space of the node's records inside a user's view,
// apart from go-perun's "Chan:" and "Peer:" tables.
const recTable = "Rec:"

// PutRecord stores value under key in the view's record table.
func (v *kvView) PutRecord(key string, value []byte) error {
	if err := v.db.PutBytes(recTable+key, value); err != nil {
		return fmt.Errorf("store record %s: %w", key, err)
	}
	return nil
}

// Records returns the records under prefix in ascending order of key.
func (v *kvView) Records(prefix string) ([]Record, error) {
	it := v.db.NewIteratorWithPrefix(recTable + prefix)
	var out []Record
	for it.Next() {
		out = append(out, Record{Key: it.Key()[len(recTable):], Value: append([]byte(nil), it.ValueBytes()...)})
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("list records %s: %w", prefix, err)
	}
	return out, nil
}

// ChannelRemoved deletes a channel, with the parent key that go-perun's
// ChannelRemoved leaves.
func (v *kvView) ChannelRemoved(ctx context.Context, id channel.ID) error {
	if err := v.PersistRestorer.ChannelRemoved(ctx, id); err != nil {
		return err //nolint:wrapcheck // go-perun's error, as a persister returns it
	}
	b := v.db.NewBatch()
	if err := b.Delete(chanTable + string(id[:]) + ":parent"); err != nil {
		return fmt.Errorf("delete parent of channel %x: %w", id, err)
	}
	if err := b.Apply(); err != nil {
		return fmt.Errorf("delete parent of channel %x: %w", id, err)
	}
	return nil
}

// RestoreAll iterates over every channel of the view: the channels with a
// "current" key, each restored by id.
func (v *kvView) RestoreAll() (persistence.ChannelIterator, error) {
	it := v.db.NewIteratorWithPrefix(chanTable)
	var ids []channel.ID
	for it.Next() {
		k := it.Key()
		if len(k) < chanFields || k[chanFields-1] != ':' || k[chanFields:] != "current" {
			continue
		}
		var id channel.ID
		copy(id[:], k[len(chanTable):])
		ids = append(ids, id)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("list channels: %w", err)
	}
	return &idIterator{v: v, ids: ids}, nil
}

// idIterator restores the channels of ids one by one.
type idIterator struct {
	v   *kvView
	ids []channel.ID
	ch  *persistence.Channel
	err error
}

// Next restores the next channel.
func (i *idIterator) Next(ctx context.Context) bool {
	if i.err != nil || len(i.ids) == 0 {
		return false
	}
	if err := ctx.Err(); err != nil {
		i.err = fmt.Errorf("restore channels: %w", err)
		return false
	}
	id := i.ids[0]
	i.ids = i.ids[1:]
	ch, err := i.v.RestoreChannel(ctx, id)
	if err != nil {
		i.err = fmt.Errorf("restore channel %x: %w", id, err)
		return false
	}
	i.ch = ch
	return true
}

// Channel returns the channel Next restored.
func (i *idIterator) Channel() *persistence.Channel { return i.ch }

// Close ends the iteration and returns its error.
func (i *idIterator) Close() error {
	i.ids = nil
	return i.err
}
