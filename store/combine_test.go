package store

import (
	"context"
	"math/rand"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/channel/persistence"
	ctest "perun.network/go-perun/channel/test"
	"perun.network/go-perun/wallet"
	wallettest "perun.network/go-perun/wallet/test"
	wtest "perun.network/go-perun/wire/test"
	"polycry.pt/poly-go/sortedkv"
	"polycry.pt/poly-go/sortedkv/memorydb"
)

// countingDB counts the batches committed to it.
type countingDB struct {
	sortedkv.Database
	commits atomic.Int64
}

func (d *countingDB) NewBatch() sortedkv.Batch {
	return &countingBatch{Batch: d.Database.NewBatch(), d: d}
}

type countingBatch struct {
	sortedkv.Batch
	d *countingDB
}

func (b *countingBatch) Apply() error {
	b.d.commits.Add(1)
	return b.Batch.Apply()
}

// combinedChannel is a funded channel of party 0 persisted through a
// view over db, with the accounts that sign for both parties.
type combinedChannel struct {
	sm   *persistence.StateMachine
	accs []map[wallet.BackendID]wallet.Account
	bID  wallet.BackendID
}

func newCombinedChannel(ctx context.Context, t *testing.T, rng *rand.Rand, v *kvView) *combinedChannel {
	peers := wtest.NewRandomAddressesMap(rng, 2)
	bID := wallet.BackendID(channel.TestBackendID)
	accs, parts := wallettest.NewRandomAccounts(rng, 2, bID)
	params := ctest.NewRandomParams(rng, ctest.WithParts(parts))
	csm, err := channel.NewStateMachine(accs[0], *params)
	require.NoError(t, err)
	sm := persistence.FromStateMachine(csm, v)
	require.NoError(t, v.ChannelCreated(ctx, &sm, peers, nil))
	c := &combinedChannel{sm: &sm, accs: accs, bID: bID}
	require.NoError(t, sm.Init(ctx, *ctest.NewRandomAllocation(rng, ctest.WithNumParts(2)), channel.NewMockOp(channel.OpValid)))
	_, err = sm.Sig(ctx)
	require.NoError(t, err)
	c.peerSigns(ctx, t)
	require.NoError(t, sm.EnableInit(ctx))
	require.NoError(t, sm.SetFunded(ctx))
	return c
}

// peerSigns adds party 1's signature on the staged state.
func (c *combinedChannel) peerSigns(ctx context.Context, t *testing.T) {
	sig, err := channel.Sign(c.accs[1][c.bID], c.sm.StagingState(), c.bID)
	require.NoError(t, err)
	require.NoError(t, c.sm.AddSig(ctx, 1, sig))
}

// next is the channel's current state one version on.
func (c *combinedChannel) next() *channel.State {
	s := c.sm.State().Clone()
	s.Version++
	return s
}

// TestCombinedWrites: an update as its proposer is one commit (when it
// becomes current); as its responder two (the completed state before the
// responder's signature goes out, then the new current state). What is
// held back is not on disk — a view over the same database (a process
// after a crash) restores the last current state — and what must be
// durable is: the responder's completed state is there before it sends its
// signature. Reads and a channel's next write commit what is held back.
func TestCombinedWrites(t *testing.T) {
	ctx := testCtx(t)
	rng := rand.New(rand.NewSource(21))
	db := &countingDB{Database: memorydb.NewDatabase()}
	v := newKVView(db)
	c := newCombinedChannel(ctx, t, rng, v)
	restored := func() *persistence.Channel {
		ch, err := newKVView(db).RestoreChannel(ctx, c.sm.ID())
		require.NoError(t, err)
		return ch
	}
	version := c.sm.State().Version

	// Proposer: Staged and our signature held back, the peer's signature
	// held back, Enabled commits all.
	before := db.commits.Load()
	require.NoError(t, c.sm.Update(ctx, c.next(), 0))
	_, err := c.sm.Sig(ctx)
	require.NoError(t, err)
	require.Equal(t, before, db.commits.Load(), "the proposal and our signature are held back")
	require.Equal(t, version, restored().CurrentTX().Version, "a crash now finds the last current state")
	c.peerSigns(ctx, t)
	require.Equal(t, before, db.commits.Load(), "the peer's signature is held back until Enabled")
	require.NoError(t, c.sm.EnableUpdate(ctx))
	require.Equal(t, before+1, db.commits.Load(), "one commit for the proposer's update")
	got := restored()
	require.Equal(t, c.sm.CurrentTX(), got.CurrentTX())
	version++

	// Responder: the peer's proposal and signature held back; our
	// signature completes the state: committed before it is sent; Enabled
	// commits again.
	before = db.commits.Load()
	require.NoError(t, c.sm.Update(ctx, c.next(), 1))
	c.peerSigns(ctx, t)
	require.Equal(t, before, db.commits.Load())
	_, err = c.sm.Sig(ctx)
	require.NoError(t, err)
	require.Equal(t, before+1, db.commits.Load(), "the completed state is committed before our signature goes out")
	got = restored()
	require.Equal(t, version+1, got.StagingTX().State.Version)
	for i, sig := range got.StagingTX().Sigs {
		require.NotNil(t, sig, "signature %d of the completed state is on disk", i)
	}
	require.NoError(t, c.sm.EnableUpdate(ctx))
	require.Equal(t, before+2, db.commits.Load(), "two commits for the responder's update")
	require.Equal(t, c.sm.CurrentTX(), restored().CurrentTX())

	// A discarded proposal stays held back (the proposer's Enabled above
	// showed held-back writes going with the channel's next one); a read
	// through the view commits what it holds back.
	before = db.commits.Load()
	require.NoError(t, c.sm.Update(ctx, c.next(), 0))
	require.NoError(t, c.sm.DiscardUpdate(ctx))
	require.NoError(t, c.sm.Update(ctx, c.next(), 0))
	require.Equal(t, before, db.commits.Load())
	mine, err := v.RestoreChannel(ctx, c.sm.ID())
	require.NoError(t, err)
	require.Equal(t, c.sm.StagingTX().State.Version, mine.StagingTX().State.Version)
	require.Equal(t, before+1, db.commits.Load(), "a read through the view commits what it holds back")
}
