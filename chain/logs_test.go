package chain

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"
)

// A log subscription on the embedded chain delivers the logs of real
// transactions that match its filter, and only those; once the chain is
// closed, subscribing fails with a subscription that can still be ended.
func TestEmbeddedSubscribeFilterLogs(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key, holder := newKey(t)
	_, to := newKey(t)
	_, elsewhere := newKey(t)
	e := newTestChain(t, holder)
	token := deployTestToken(ctx, t, e, []common.Address{holder}, big.NewInt(100))
	transfer := crypto.Keccak256Hash([]byte("Transfer(address,address,uint256)"))

	all := make(chan types.Log, 16)
	toOnly := make(chan types.Log, 16)
	subAll, err := e.SubscribeFilterLogs(ctx, ethereum.FilterQuery{Addresses: []common.Address{token}}, all)
	require.NoError(t, err)
	defer subAll.Unsubscribe()
	subTo, err := e.SubscribeFilterLogs(ctx, ethereum.FilterQuery{Addresses: []common.Address{token},
		Topics: [][]common.Hash{{transfer}, nil, {common.BytesToHash(to.Bytes())}}}, toOnly)
	require.NoError(t, err)
	defer subTo.Unsubscribe()

	r1 := transferToken(ctx, t, e, key, token, elsewhere, big.NewInt(1))
	r2 := transferToken(ctx, t, e, key, token, to, big.NewInt(2))
	for _, want := range []*types.Receipt{r1, r2} {
		l := recvLog(t, all, 10*time.Second)
		require.Equal(t, want.TxHash, l.TxHash)
		require.Equal(t, want.BlockHash, l.BlockHash)
		require.Equal(t, token, l.Address)
		require.Equal(t, transfer, l.Topics[0])
		require.Equal(t, common.BytesToHash(holder.Bytes()), l.Topics[1])
	}
	l := recvLog(t, toOnly, 10*time.Second)
	require.Equal(t, r2.TxHash, l.TxHash, "the topic filter passes only the transfer to `to`")
	require.Equal(t, "2", new(big.Int).SetBytes(l.Data).String())
	select {
	case l := <-toOnly:
		t.Fatalf("a log the filter excludes: %v", l.TxHash)
	default:
	}

	subAll.Unsubscribe()
	_, open := recv(t, subAll.Err(), 10*time.Second, "Err closed")
	require.False(t, open, "Err is closed at Unsubscribe")

	// A closed chain: subscribing fails, and perun-eth-backend's Unsubscribe
	// on what it got does not panic.
	subTo.Unsubscribe()
	require.NoError(t, e.Close())
	s, err := e.SubscribeFilterLogs(ctx, ethereum.FilterQuery{}, make(chan types.Log))
	require.ErrorContains(t, err, "subscribe to logs")
	require.NotNil(t, s)
	s.Unsubscribe()
	h, err := e.SubscribeNewHead(ctx, make(chan *types.Header))
	require.ErrorContains(t, err, "subscribe to heads")
	require.NotNil(t, h)
	h.Unsubscribe()
}
