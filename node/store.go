package node

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/perund/perund/config"
	"github.com/perund/perund/store"
)

// storeName is the node's LevelDB channel store inside the data dir.
const storeName = "channels.db"

// openStore opens the node's channel store — PostgreSQL when store.url is
// set, else LevelDB in the data dir — and moves the per-user databases of
// earlier versions into it. It is the one place that picks the backend,
// and with it where the node's documents (session metadata, contacts,
// session records) are: the PostgreSQL store's docs table, or files in the
// data dir. epoch, if not zero, fences the PostgreSQL store's writes with
// the cluster lease.
func openStore(ctx context.Context, cfg *config.Config, lg *slog.Logger, epoch int64) (store.Store, store.Docs, error) {
	var st store.Store
	var docs store.Docs
	if cfg.Store.URL != "" {
		pst, err := store.OpenPostgres(ctx, cfg.Store.URL, store.PostgresOptions{Epoch: epoch})
		if err != nil {
			return nil, nil, err
		}
		lg.Info("channel store: PostgreSQL", "database", store.RedactURL(cfg.Store.URL), "schemaVersion", store.PostgresSchemaVersion, "leaseEpoch", epoch)
		st, docs = pst, pst.Docs()
	} else {
		lst, err := store.OpenLevelDB(filepath.Join(cfg.DataDir, storeName), store.LevelDBOptions{Sync: cfg.Store.Sync})
		if err != nil {
			return nil, nil, err
		}
		st, docs = lst, store.NewFileDocs(cfg.DataDir)
	}
	moved, err := store.MigrateLegacy(ctx, cfg.DataDir, st)
	for _, u := range moved {
		lg.Info("channel database moved into the node's store", "address", u.Hex())
	}
	if err != nil {
		_ = st.Close()
		return nil, nil, err
	}
	return st, docs, nil
}
