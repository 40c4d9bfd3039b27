package node

import (
	"context"
	"log/slog"
	"sync"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/perun-network/perun-eth-backend/bindings/adjudicator"
	"github.com/perun-network/perun-eth-backend/bindings/assetholder"
	"github.com/perun-network/perun-eth-backend/bindings/peruntoken"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/metrics"
)

type recorderKey struct{}

// txRecorder collects the hashes of the transactions sent under a context,
// so that a channel can list its transactions and a chain error its hash.
type txRecorder struct {
	mu     sync.Mutex
	hashes []string
	// notSent is the error of the first transaction the chain refused.
	notSent error
}

// sendErr returns the error of the first transaction the chain refused.
func (r *txRecorder) sendErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.notSent
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
// watcher sends its refutations under contexts of its own). It logs every
// transaction once when sent (with its purpose: the contract method) and
// once when its receipt is first read (mined or reverted).
type recordingBackend struct {
	chain.Backend
	unattributed func(tx *types.Transaction)
	log          *slog.Logger
	owner        common.Address // the sender, named in the log
	purposes     *txPurposes
	sent         *sentTxs
	metrics      *metrics.Metrics
}

// sentTxs are the transactions sent whose outcome is not logged yet.
type sentTxs struct {
	mu      sync.Mutex
	purpose map[common.Hash]string
}

func newSentTxs() *sentTxs { return &sentTxs{purpose: map[common.Hash]string{}} }

func (b recordingBackend) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	err := b.Backend.SendTransaction(ctx, tx)
	if b.log != nil {
		purpose := b.purposes.of(tx)
		if err != nil {
			b.log.Warn("transaction not sent", "address", b.owner.Hex(), "purpose", purpose, "tx", tx.Hash().Hex(), "nonce", tx.Nonce(), "err", err)
			b.metrics.Transaction(purpose, "not_sent", 0)
		} else {
			b.log.Info("transaction sent", "address", b.owner.Hex(), "purpose", purpose, "tx", tx.Hash().Hex(), "nonce", tx.Nonce())
			b.sent.mu.Lock()
			b.sent.purpose[tx.Hash()] = purpose
			b.sent.mu.Unlock()
		}
	}
	if r, ok := ctx.Value(recorderKey{}).(*txRecorder); ok {
		r.mu.Lock()
		r.hashes = append(r.hashes, tx.Hash().Hex())
		if err != nil && r.notSent == nil {
			r.notSent = err
		}
		r.mu.Unlock()
	} else if err == nil && b.unattributed != nil {
		b.unattributed(tx)
	}
	return err
}

// TransactionReceipt reads a receipt and logs the outcome of a transaction
// sent through b the first time its receipt is read.
func (b recordingBackend) TransactionReceipt(ctx context.Context, h common.Hash) (*types.Receipt, error) {
	r, err := b.Backend.TransactionReceipt(ctx, h)
	if err != nil || r == nil || b.log == nil {
		return r, err
	}
	b.sent.mu.Lock()
	purpose, ok := b.sent.purpose[h]
	delete(b.sent.purpose, h)
	b.sent.mu.Unlock()
	if ok {
		if r.Status == types.ReceiptStatusSuccessful {
			b.log.Info("transaction mined", "address", b.owner.Hex(), "purpose", purpose, "tx", h.Hex(), "block", r.BlockNumber, "gasUsed", r.GasUsed)
			b.metrics.Transaction(purpose, "mined", r.GasUsed)
		} else {
			b.log.Error("transaction reverted", "address", b.owner.Hex(), "purpose", purpose, "tx", h.Hex(), "block", r.BlockNumber, "gasUsed", r.GasUsed)
			b.metrics.Transaction(purpose, "reverted", r.GasUsed)
		}
	}
	return r, err
}

// txPurposes names transactions by the Perun contract method they call.
type txPurposes struct {
	byID map[[4]byte]string
}

// newTxPurposes reads the method ids of the adjudicator, the asset holders
// and the ERC20 token (approve); a node builds it once.
func newTxPurposes() *txPurposes {
	p := &txPurposes{byID: map[[4]byte]string{}}
	for _, md := range []*bind.MetaData{adjudicator.AdjudicatorMetaData, assetholder.AssetholderMetaData, peruntoken.PeruntokenMetaData} {
		a, err := md.GetAbi()
		if err != nil || a == nil {
			continue
		}
		for _, m := range a.Methods {
			var id [4]byte
			copy(id[:], m.ID)
			if _, dup := p.byID[id]; !dup {
				p.byID[id] = m.Name
			}
		}
	}
	return p
}

// of names tx: its contract method, "transfer" for a plain payment,
// "call" for an unknown method.
func (p *txPurposes) of(tx *types.Transaction) string {
	data := tx.Data()
	if len(data) == 0 {
		return "transfer"
	}
	if p == nil || len(data) < 4 {
		return "call"
	}
	var id [4]byte
	copy(id[:], data[:4])
	if name, ok := p.byID[id]; ok {
		return name
	}
	return "call"
}

// parseAdjudicatorABI parses the adjudicator's ABI (once per node: no
// package state).
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
