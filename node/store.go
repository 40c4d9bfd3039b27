package node

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/perund/perund/config"
	"github.com/perund/perund/store"
)

// storeName is the node's channel store inside the data dir.
const storeName = "channels.db"

// openStore opens the node's channel store and moves the per-user
// databases of earlier versions into it.
func openStore(ctx context.Context, cfg *config.Config, lg *slog.Logger) (store.Store, error) {
	st, err := store.OpenLevelDB(filepath.Join(cfg.DataDir, storeName), store.LevelDBOptions{Sync: cfg.Store.Sync})
	if err != nil {
		return nil, err
	}
	moved, err := store.MigrateLegacy(ctx, cfg.DataDir, st)
	for _, u := range moved {
		lg.Info("channel database moved into the node's store", "address", u.Hex())
	}
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	return st, nil
}
