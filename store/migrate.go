package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ethereum/go-ethereum/common"
	"perun.network/go-perun/channel/persistence"
	pgleveldb "polycry.pt/poly-go/sortedkv/leveldb"
)

// Names of the per-user LevelDB of earlier perund versions, inside the
// user's directory dataDir/<lowercase 0x address>, and of what it becomes
// once migrated.
const (
	LegacyName   = "channels.db"
	MigratedName = "channels.db.migrated"
)

// MigrateLegacy moves every user's database of the old layout,
// dataDir/<address>/channels.db, into st, and renames the old database to
// channels.db.migrated, so that it is moved only once. It returns the
// users it moved. Each channel is written through the user's view as
// go-perun writes a new channel, with its parameters, current and staged
// state, signatures, phase, peers and parent, so the move works into any
// backend. A database that cannot be moved stops the migration with an
// error and stays where it is; moving it again overwrites the channels it
// already wrote with the same data.
func MigrateLegacy(ctx context.Context, dataDir string, st Store) ([]common.Address, error) {
	ents, err := os.ReadDir(dataDir)
	if err != nil {
		return nil, fmt.Errorf("migrate channel databases: %w", err)
	}
	var moved []common.Address
	for _, e := range ents {
		if !e.IsDir() || !common.IsHexAddress(e.Name()) {
			continue
		}
		path := filepath.Join(dataDir, e.Name(), LegacyName)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return moved, fmt.Errorf("migrate channel database %s: %w", path, err)
		}
		addr := common.HexToAddress(e.Name())
		if err := migrateOne(ctx, path, st.User(addr)); err != nil {
			return moved, fmt.Errorf("migrate channel database %s: %w", path, err)
		}
		if err := os.Rename(path, filepath.Join(dataDir, e.Name(), MigratedName)); err != nil {
			return moved, fmt.Errorf("migrate channel database %s: %w", path, err)
		}
		moved = append(moved, addr)
	}
	return moved, nil
}

// migrateOne copies every channel of the LevelDB at path into dst.
func migrateOne(ctx context.Context, path string, dst persistence.PersistRestorer) (err error) {
	db, err := pgleveldb.LoadDatabase(path)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	src := newKVView(db)
	defer func() {
		if cerr := src.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()
	it, err := src.RestoreAll()
	if err != nil {
		return fmt.Errorf("read channels: %w", err)
	}
	for it.Next(ctx) {
		ch := it.Channel()
		if err := dst.ChannelCreated(ctx, ch, ch.PeersV, ch.Parent); err != nil {
			_ = it.Close()
			return fmt.Errorf("write channel %x: %w", ch.ID(), err)
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("read channels: %w", err)
	}
	return ctx.Err()
}
