package chain

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"
)

// Block times follow the wall clock: a burst of transactions does not run
// chain time ahead by more than a second, and empty blocks keep it level
// with the clock.
func TestEmbeddedClock(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := NewEmbedded(EmbeddedOptions{BlockInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	defer e.Close()
	for i := 0; i < 8; i++ {
		require.NoError(t, e.Fund(ctx, common.BigToAddress(big.NewInt(int64(i+10))), Ether))
		h, err := e.HeaderByNumber(ctx, nil)
		require.NoError(t, err)
		now := uint64(time.Now().Unix())
		require.LessOrEqual(t, h.Time, now+1, "block %d stamped ahead of the clock", h.Number)
		require.GreaterOrEqual(t, h.Time+2, now, "block %d stamped behind the clock", h.Number)
	}
	start, err := e.HeaderByNumber(ctx, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		h, err := e.HeaderByNumber(ctx, nil)
		return err == nil && h.Time >= start.Time+2
	}, 10*time.Second, 50*time.Millisecond, "empty blocks keep chain time moving with the clock")
	h, err := e.HeaderByNumber(ctx, nil)
	require.NoError(t, err)
	require.LessOrEqual(t, h.Time, uint64(time.Now().Unix())+1)
}

// A chain with a data dir reopens with its blocks, balances, contracts and
// faucet.
func TestEmbeddedPersists(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	k, err := crypto.GenerateKey()
	require.NoError(t, err)
	user := crypto.PubkeyToAddress(k.PublicKey)
	opts := EmbeddedOptions{Alloc: map[common.Address]*big.Int{user: Ether}, BlockInterval: 50 * time.Millisecond, DataDir: dir}

	e, err := NewEmbedded(opts)
	require.NoError(t, err)
	_, _, c, err := e.Deploy(ctx)
	require.NoError(t, err)
	require.NoError(t, e.Fund(ctx, user, Ether))
	head, err := e.HeaderByNumber(ctx, nil)
	require.NoError(t, err)
	faucet := crypto.PubkeyToAddress(e.Faucet().PublicKey)
	require.NoError(t, e.Close())

	e, err = NewEmbedded(opts)
	require.NoError(t, err)
	defer e.Close()
	require.Equal(t, faucet, crypto.PubkeyToAddress(e.Faucet().PublicKey))
	h, err := e.HeaderByNumber(ctx, nil)
	require.NoError(t, err)
	require.GreaterOrEqual(t, h.Number.Uint64(), head.Number.Uint64())
	bal, err := e.BalanceAt(ctx, user, nil)
	require.NoError(t, err)
	require.Equal(t, new(big.Int).Mul(Ether, big.NewInt(2)), bal)
	id, _ := e.ChainID(ctx)
	cb, dep := DeployerBackend(e, id, e.Faucet())
	_, err = SetupContracts(ctx, cb, "validate", c, dep)
	require.NoError(t, err, "the contracts are still there")
	require.NoError(t, e.Fund(ctx, user, Ether), "the faucet still sends")
}
