package node

import (
	"context"
	"fmt"
	"strings"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/store"
)

// bindDataDir ties the data dir to the chain and contracts the node runs
// with: the first start records them (chain.DeploymentFile), later starts
// refuse a data dir recorded for another chain id or other contracts,
// naming the channels that would be stranded, instead of restoring
// channels whose contracts are not there. Assets added to the
// configuration are recorded.
func bindDataDir(ctx context.Context, dir string, cur chain.Deployment, st store.Store) error {
	rec, ok, err := chain.LoadDeployment(dir)
	if err != nil {
		return err
	}
	if !ok {
		return cur.Save(dir)
	}
	if diffs := rec.Differences(cur); len(diffs) > 0 {
		return &chain.MismatchError{Dir: dir, Differences: diffs, Channels: storedChannels(ctx, st)}
	}
	if len(cur.Assets) != len(rec.Assets) {
		return cur.Save(dir)
	}
	return nil
}

// storedChannels lists the channels persisted in the node's store as
// "user: channel id" (best effort: a user whose channels cannot be read is
// named as such).
func storedChannels(ctx context.Context, st store.Store) []string {
	users, err := st.Users(ctx)
	if err != nil {
		return []string{fmt.Sprintf("unreadable store (%v)", err)}
	}
	var out []string
	for _, u := range users {
		name := strings.ToLower(u.Hex())
		ids, err := readChannelIDs(ctx, st.User(u))
		if err != nil {
			out = append(out, fmt.Sprintf("%s: unreadable channels (%v)", name, err))
		}
		for _, id := range ids {
			out = append(out, name+": "+id)
		}
	}
	return out
}

func readChannelIDs(ctx context.Context, v store.View) ([]string, error) {
	it, err := v.RestoreAll()
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
