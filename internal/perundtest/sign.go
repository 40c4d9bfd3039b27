// Package perundtest is perund's shared test kit: set-up that several
// packages' tests need, declared once.
package perundtest

import (
	"crypto/ecdsa"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	ethwallet "github.com/perun-network/perun-eth-backend/wallet"
	"github.com/perun-network/perun-eth-backend/wallet/simple"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/wallet"
)

// SignAll signs st with each key, in the order of the channel's
// participants, and returns the transaction: a state every party signed
// (a test that plays a cheater registers such an old one).
func SignAll(t testing.TB, st *channel.State, keys ...*ecdsa.PrivateKey) channel.Transaction {
	t.Helper()
	w := simple.NewWallet(keys...)
	sigs := make([]wallet.Sig, len(keys))
	for i, k := range keys {
		acc, err := w.Unlock(ethwallet.AsWalletAddr(crypto.PubkeyToAddress(k.PublicKey)))
		require.NoError(t, err)
		sigs[i], err = ethchannel.Sign(acc, st)
		require.NoError(t, err)
	}
	return channel.Transaction{State: st, Sigs: sigs}
}

// Keys parses hex private keys.
func Keys(t testing.TB, hexKeys ...string) []*ecdsa.PrivateKey {
	t.Helper()
	out := make([]*ecdsa.PrivateKey, len(hexKeys))
	for i, h := range hexKeys {
		k, err := crypto.HexToECDSA(h)
		require.NoError(t, err)
		out[i] = k
	}
	return out
}
