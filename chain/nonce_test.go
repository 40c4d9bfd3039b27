package chain

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/params"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	"github.com/stretchr/testify/require"
)

// After a transaction that was never sent, the perun backend expects the
// next nonce after it, so the next transaction would wait behind a gap for
// ever; ResetNonce makes it use the chain's pending nonce again, for that
// account only.
func TestResetNonce(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key, addr := newKey(t)
	otherKey, other := newKey(t)
	e := newTestChain(t, addr)
	id, err := e.ChainID(ctx)
	require.NoError(t, err)
	cb, acc := DeployerBackend(e, id, key)
	otherCB, otherAcc := DeployerBackend(e, id, otherKey)
	nextNonce := func(cb *ethchannel.ContractBackend, acc accounts.Account) uint64 {
		t.Helper()
		auth, err := cb.NewTransactor(ctx, params.TxGas, acc)
		require.NoError(t, err)
		return auth.Nonce.Uint64()
	}

	require.Equal(t, uint64(0), nextNonce(&cb, acc))
	require.Equal(t, uint64(1), nextNonce(&cb, acc), "the first transaction failed before it was sent: a gap")
	require.Equal(t, uint64(0), nextNonce(&otherCB, otherAcc))

	ResetNonce(id, acc.Address)
	ResetNonce(big.NewInt(987654321), acc.Address) // a chain never used: nothing to forget

	auth, err := cb.NewTransactor(ctx, params.TxGas, acc)
	require.NoError(t, err)
	require.Equal(t, uint64(0), auth.Nonce.Uint64(), "the chain's pending nonce again")
	// A transaction with it is mined.
	tx, err := auth.Signer(acc.Address, types.NewTx(&types.DynamicFeeTx{ChainID: id, Nonce: auth.Nonce.Uint64(),
		GasTipCap: big.NewInt(params.GWei), GasFeeCap: big.NewInt(100 * params.GWei), Gas: params.TxGas, To: &other, Value: big.NewInt(1)}))
	require.NoError(t, err)
	require.NoError(t, e.SendTransaction(ctx, tx))
	r, err := bind.WaitMinedHash(ctx, e, tx.Hash())
	require.NoError(t, err)
	require.Equal(t, types.ReceiptStatusSuccessful, r.Status)
	require.Equal(t, uint64(1), nextNonce(&cb, acc), "after the mined transaction")

	require.Equal(t, uint64(1), nextNonce(&otherCB, otherAcc), "another account's expectation is kept")
}
