package chain

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"
	"github.com/stretchr/testify/require"
)

func TestEmbeddedDeployAndReject(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k, err := crypto.GenerateKey()
	require.NoError(t, err)
	user := crypto.PubkeyToAddress(k.PublicKey)
	e, err := NewEmbedded(EmbeddedOptions{Alloc: map[common.Address]*big.Int{user: Ether}, BlockInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	defer e.Close()
	id, err := e.ChainID(ctx)
	require.NoError(t, err)
	cb, deployer := DeployerBackend(e, id, e.Faucet())
	c, err := SetupContracts(ctx, cb, "deploy", Contracts{}, deployer)
	require.NoError(t, err)
	_, err = SetupContracts(ctx, cb, "validate", c, deployer)
	require.NoError(t, err)
	_, err = SetupContracts(ctx, cb, "validate", Contracts{Adjudicator: c.AssetHolderETH, AssetHolderETH: c.Adjudicator}, deployer)
	require.Error(t, err, "swapped addresses do not validate")

	// Blocks keep coming without transactions.
	h1, err := e.HeaderByNumber(ctx, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		h2, err := e.HeaderByNumber(ctx, nil)
		return err == nil && h2.Number.Cmp(h1.Number) > 0
	}, 5*time.Second, 20*time.Millisecond)

	// Invalid transactions are errors, not panics.
	to := common.HexToAddress("0x01")
	tests := []struct {
		name  string
		nonce uint64
		value *big.Int
	}{
		{"more than the balance", 1, new(big.Int).Mul(Ether, big.NewInt(2))},
		{"nonce already used", 0, big.NewInt(1)},
	}
	to0 := common.HexToAddress("0x02")
	first, err := types.SignNewTx(k, e.Signer(), &types.DynamicFeeTx{ChainID: id, Nonce: 0,
		GasFeeCap: big.NewInt(params.GWei * 10), GasTipCap: big.NewInt(params.GWei), Gas: params.TxGas, To: &to0, Value: big.NewInt(1)})
	require.NoError(t, err)
	require.NoError(t, e.SendTransaction(ctx, first))
	_, err = bind.WaitMinedHash(ctx, e, first.Hash())
	require.NoError(t, err)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := types.SignNewTx(k, e.Signer(), &types.DynamicFeeTx{ChainID: id, Nonce: tc.nonce,
				GasFeeCap: big.NewInt(params.GWei), GasTipCap: big.NewInt(1), Gas: params.TxGas, To: &to, Value: tc.value})
			require.NoError(t, err)
			require.ErrorIs(t, e.SendTransaction(ctx, tx), ErrRejected)
		})
	}
	before, err := e.BalanceAt(ctx, user, nil)
	require.NoError(t, err)
	require.NoError(t, e.Fund(ctx, user, Ether))
	bal, err := e.BalanceAt(ctx, user, nil)
	require.NoError(t, err)
	require.Equal(t, new(big.Int).Add(before, Ether), bal)
}

// TestRedactURL: a chain URL in logs and errors keeps its scheme and host
// and loses what may hold a secret.
func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"ws://127.0.0.1:8545", "ws://127.0.0.1:8545"},
		{"ws://127.0.0.1:8545/", "ws://127.0.0.1:8545"},
		{"wss://mainnet.infura.io/ws/v3/s3cret", "wss://mainnet.infura.io/…"},
		{"wss://user:s3cret@node.example:8546", "wss://node.example:8546/…"},
		{"wss://node.example/?apikey=s3cret", "wss://node.example/…"},
		{"embedded", "embedded"},
		{"node.example/s3cret", "(a chain URL that does not parse)"},
		{"ws://%zz/s3cret", "(a chain URL that does not parse)"},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			require.Equal(t, tc.want, RedactURL(tc.raw))
		})
	}
}
