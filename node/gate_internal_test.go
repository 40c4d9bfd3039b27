package node

import (
	"errors"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	ethwallet "github.com/perun-network/perun-eth-backend/wallet"
	"github.com/perun-network/perun-eth-backend/wallet/simple"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"

	"github.com/perund/perund/wireid"
)

// switchGate allows signatures while open.
type switchGate struct{ open bool }

var errClosedGate = errors.New("gate closed")

func (g *switchGate) Check() error {
	if !g.open {
		return errClosedGate
	}
	return nil
}

// Every kind of signature a session makes passes the node's gate: a
// go-perun state or withdrawal signature (the wallet's account), a
// transaction (the transactor's signer), the peer handshake (the wire
// account) and a refutation (refute). With the gate open each signs; once
// it is closed (the cluster lease expired) each refuses with the gate's
// error, and nothing is signed.
func TestEverySignaturePassesTheGate(t *testing.T) {
	key, err := crypto.GenerateKey()
	require.NoError(t, err)
	addr := crypto.PubkeyToAddress(key.PublicKey)
	g := &switchGate{}
	n := &Node{gate: g}
	sw := simple.NewWallet(key)
	w := gatedWallet{Wallet: sw, n: n}
	signer := types.LatestSignerForChainID(big.NewInt(1337))
	tr := gatedTransactor{Transactor: simple.NewTransactor(sw, signer), n: n}
	wacc := wireid.NewAccount(key).WithGate(n.checkGate)

	signs := []struct {
		name string
		sign func() error
	}{
		{"channel state", func() error {
			acc, err := w.Unlock(ethwallet.AsWalletAddr(addr))
			if err != nil {
				return err
			}
			_, err = acc.SignData([]byte("state"))
			return err
		}},
		{"transaction", func() error {
			opts, err := tr.NewTransactor(accounts.Account{Address: addr})
			if err != nil {
				return err
			}
			_, err = opts.Signer(addr, types.NewTx(&types.DynamicFeeTx{ChainID: big.NewInt(1337)}))
			return err
		}},
		{"peer handshake", func() error { _, err := wacc.Sign([]byte("hello")); return err }},
		{"refutation", func() error { return n.refute(t.Context(), nil, channel.AdjudicatorReq{}) }},
	}
	for _, s := range signs {
		g.open = false
		require.ErrorIs(t, s.sign(), errClosedGate, "%s with the gate closed", s.name)
		if s.name == "refutation" {
			continue // with the gate open it needs a chain: the check comes first
		}
		g.open = true
		require.NoError(t, s.sign(), "%s with the gate open", s.name)
	}
}
