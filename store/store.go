// Package store is perund's channel database: one database for the node,
// with a key space per user. go-perun persists each user's channels
// through that user's view (a persistence.PersistRestorer); the node lists
// the users with stored channels, for instance to watch their channels
// while they are logged out.
//
// Store is the interface a backend implements; LevelDB is the default
// backend. MigrateLegacy moves the one-LevelDB-per-user layout of earlier
// perund versions into a Store.
package store

import (
	"context"

	"github.com/ethereum/go-ethereum/common"
	"perun.network/go-perun/channel/persistence"
)

// Store is one database holding the channels of every user of a node, each
// user in a key space of its own. Its methods are safe for concurrent use.
type Store interface {
	// User returns the key space of addr.
	// It is cheap, needs no I/O and may be called any number of times;
	// views of one user share their data. A view's Close releases only the
	// view: the store stays open for every other view.
	User(addr common.Address) View
	// Users lists the users that have data in the store, in ascending
	// order of address.
	Users(ctx context.Context) ([]common.Address, error)
	// Close closes the store. Views in use fail afterwards, so the node
	// closes it last, after every session and every other reader.
	Close() error
}

// View is one user's key space: what go-perun persists and restores of
// the user's channels.
type View interface {
	persistence.PersistRestorer
	// RestoreAll iterates over every channel of the user, whatever the
	// peer.
	RestoreAll() (persistence.ChannelIterator, error)
	// PutRecord stores a small record of the node's beside the channels
	// (the dispute log), replacing the one under key.
	PutRecord(key string, value []byte) error
	// Records returns the records whose key starts with prefix, in
	// ascending order of key.
	Records(prefix string) ([]Record, error)
}

// Record is a key and value stored by View.PutRecord.
type Record struct {
	Key   string
	Value []byte
}
