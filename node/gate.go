package node

import (
	"fmt"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	"perun.network/go-perun/wallet"
)

// Gate decides whether the node may sign at all: a cluster node may only
// while it holds the lease (cluster.Lease). Every signature perund makes
// passes it: go-perun's channel states and the withdrawal authorisations
// (the user's wallet), transactions (the user's transactor), the peer
// handshake (the user's wire account) and the watchtower's refutations.
type Gate interface {
	// Check returns nil if a signature may be made now.
	Check() error
}

// checkGate asks n's gate, if it has one.
func (n *Node) checkGate() error {
	if n.gate == nil {
		return nil
	}
	if err := n.gate.Check(); err != nil {
		return fmt.Errorf("signature refused: %w", err)
	}
	return nil
}

// gatedWallet is a go-perun wallet whose accounts sign only through the
// node's gate.
type gatedWallet struct {
	wallet.Wallet
	n *Node
}

// Unlock returns the account of a, signing through the gate.
func (w gatedWallet) Unlock(a wallet.Address) (wallet.Account, error) {
	acc, err := w.Wallet.Unlock(a)
	if err != nil {
		return nil, err //nolint:wrapcheck // the wallet's error, as go-perun expects it
	}
	return gatedAccount{Account: acc, n: w.n}, nil
}

// gatedAccount signs only while the node's gate allows.
type gatedAccount struct {
	wallet.Account
	n *Node
}

// SignData signs data if the gate allows.
func (a gatedAccount) SignData(data []byte) ([]byte, error) {
	if err := a.n.checkGate(); err != nil {
		return nil, err
	}
	return a.Account.SignData(data) //nolint:wrapcheck // the wallet's error, as go-perun expects it
}

// gatedTransactor signs transactions only while the node's gate allows.
type gatedTransactor struct {
	ethchannel.Transactor
	n *Node
}

// NewTransactor returns the inner transactor's options with a signer that
// asks the gate first.
func (t gatedTransactor) NewTransactor(acc accounts.Account) (*bind.TransactOpts, error) {
	opts, err := t.Transactor.NewTransactor(acc)
	if err != nil {
		return nil, err //nolint:wrapcheck // the transactor's error
	}
	sign := opts.Signer
	opts.Signer = func(a common.Address, tx *types.Transaction) (*types.Transaction, error) {
		if err := t.n.checkGate(); err != nil {
			return nil, err
		}
		return sign(a, tx)
	}
	return opts, nil
}
