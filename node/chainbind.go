package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"perun.network/go-perun/channel/persistence/keyvalue"
	"polycry.pt/poly-go/sortedkv/leveldb"

	"github.com/perund/perund/chain"
)

// bindDataDir ties the data dir to the chain and contracts the node runs
// with: the first start records them (chain.DeploymentFile), later starts
// refuse a data dir recorded for another chain id or other contracts,
// naming the channels that would be stranded, instead of restoring
// channels whose contracts are not there. Assets added to the
// configuration are recorded.
func bindDataDir(ctx context.Context, dir string, cur chain.Deployment) error {
	rec, ok, err := chain.LoadDeployment(dir)
	if err != nil {
		return err
	}
	if !ok {
		return cur.Save(dir)
	}
	if diffs := rec.Differences(cur); len(diffs) > 0 {
		return &chain.MismatchError{Dir: dir, Differences: diffs, Channels: storedChannels(ctx, dir)}
	}
	if len(cur.Assets) != len(rec.Assets) {
		return cur.Save(dir)
	}
	return nil
}

// storedChannels lists the channels persisted in the users' stores under
// dir as "user: channel id" (best effort: a store that cannot be read is
// named as such).
func storedChannels(ctx context.Context, dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || !common.IsHexAddress(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name(), "channels.db")
		if _, err := os.Stat(path); err != nil {
			continue
		}
		ids, err := readChannelIDs(ctx, path)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: unreadable store (%v)", e.Name(), err))
			continue
		}
		for _, id := range ids {
			out = append(out, e.Name()+": "+id)
		}
	}
	return out
}

func readChannelIDs(ctx context.Context, path string) ([]string, error) {
	db, err := leveldb.LoadDatabase(path)
	if err != nil {
		return nil, err
	}
	pr := keyvalue.NewPersistRestorer(db)
	defer pr.Close()
	it, err := pr.RestoreAll()
	if err != nil {
		return nil, err
	}
	var ids []string
	for it.Next(ctx) {
		ids = append(ids, "0x"+strings.ToLower(fmt.Sprintf("%x", it.Channel().ID())))
	}
	if err := it.Close(); err != nil {
		return ids, fmt.Errorf("read channels: %w", err)
	}
	return ids, nil
}
