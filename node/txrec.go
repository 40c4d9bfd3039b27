package node

import (
	"context"
	"sync"

	"github.com/ethereum/go-ethereum/core/types"

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
// the recorder of the sending context.
type recordingBackend struct{ chain.Backend }

func (b recordingBackend) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	err := b.Backend.SendTransaction(ctx, tx)
	if r, ok := ctx.Value(recorderKey{}).(*txRecorder); ok {
		r.mu.Lock()
		r.hashes = append(r.hashes, tx.Hash().Hex())
		r.mu.Unlock()
	}
	return err
}
