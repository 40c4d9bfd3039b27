package node

import (
	"context"
	"sync"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/perun-network/perun-eth-backend/bindings/adjudicator"

	"github.com/perund/perund/chain"
)

type recorderKey struct{}

// txRecorder collects the hashes of the transactions sent under a context,
// so that a channel can list its transactions and a chain error its hash.
type txRecorder struct {
	mu     sync.Mutex
	hashes []string
}

func withRecorder(ctx context.Context) (context.Context, *txRecorder) {
	r := &txRecorder{}
	return context.WithValue(ctx, recorderKey{}, r), r
}

func (r *txRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.hashes...)
}

func (r *txRecorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.hashes) == 0 {
		return ""
	}
	return r.hashes[len(r.hashes)-1]
}

// recordingBackend is a chain backend that reports each sent transaction to
// the recorder of the sending context, or else to unattributed (go-perun's
// watcher sends its refutations under contexts of its own).
type recordingBackend struct {
	chain.Backend
	unattributed func(tx *types.Transaction)
}

func (b recordingBackend) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	err := b.Backend.SendTransaction(ctx, tx)
	if r, ok := ctx.Value(recorderKey{}).(*txRecorder); ok {
		r.mu.Lock()
		r.hashes = append(r.hashes, tx.Hash().Hex())
		r.mu.Unlock()
	} else if err == nil && b.unattributed != nil {
		b.unattributed(tx)
	}
	return err
}

// adjudicatorABI is parsed once per session (no package state).
func parseAdjudicatorABI() *abi.ABI {
	a, err := adjudicator.AdjudicatorMetaData.GetAbi()
	if err != nil {
		return nil
	}
	return a
}

// channelOfTx finds the channel an adjudicator transaction is about.
func channelOfTx(a *abi.ABI, tx *types.Transaction) ([32]byte, bool) {
	data := tx.Data()
	if a == nil || len(data) < 4 {
		return [32]byte{}, false
	}
	m, err := a.MethodById(data[:4])
	if err != nil {
		return [32]byte{}, false
	}
	args, err := m.Inputs.Unpack(data[4:])
	if err != nil || len(args) == 0 {
		return [32]byte{}, false
	}
	switch m.Name {
	case "register":
		var ss adjudicator.AdjudicatorSignedState
		if v, ok := abi.ConvertType(args[0], &ss).(*adjudicator.AdjudicatorSignedState); ok {
			return v.State.ChannelID, true
		}
	case "conclude", "concludeFinal":
		if len(args) > 1 {
			var st adjudicator.ChannelState
			if v, ok := abi.ConvertType(args[1], &st).(*adjudicator.ChannelState); ok {
				return v.ChannelID, true
			}
		}
	}
	return [32]byte{}, false
}
