package node_test

import (
	"context"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/internal/leaktest"
	"github.com/perund/perund/node"
)

// TestOnePeerPort: a node with three sessions open has exactly one peer
// listening socket, and every session's commAddress is the node's. Two of
// its users open a channel and pay each other through it; one logs out and
// in again (the port stays, the user registers anew) and the payments go
// on. Once the node is closed its socket is gone.
func TestOnePeerPort(t *testing.T) {
	ck, err := crypto.GenerateKey()
	require.NoError(t, err)
	keyCarol := hex.EncodeToString(crypto.FromECDSA(ck))
	v, addrs := newEnv(t, keyAlice, keyBob, keyCarol)
	before := leaktest.ListeningSockets(t)
	n := v.node(t, map[string]string{keyAlice: "alice", keyBob: "bob", keyCarol: "carol"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := n.OpenSessions(ctx, []node.Login{{Account: addrs[0], Password: "alice"}, {Account: addrs[1], Password: "bob"}, {Account: addrs[2], Password: "carol"}})
	require.NoError(t, err)
	require.Equal(t, before+1, leaktest.ListeningSockets(t), "one peer port for three sessions")
	for _, s := range list {
		require.Equal(t, n.CommAddress(), s.CommAddress())
	}
	require.True(t, strings.HasPrefix(n.CommAddress(), "127.0.0.1:"), n.CommAddress())

	alice, bob := list[0], list[1]
	introduce(t, alice, bob)
	ci := openAccepted(ctx, t, alice, bob, eth(5), eth(5))
	_, err = alice.Send(ctx, ci.ChannelID, big.NewInt(10))
	require.NoError(t, err)
	_, err = bob.Send(ctx, ci.ChannelID, big.NewInt(4))
	require.NoError(t, err)

	require.NoError(t, n.CloseSession(ctx, bob, true))
	bob, err = n.OpenSession(ctx, addrs[1], "bob", false)
	require.NoError(t, err)
	require.Equal(t, n.CommAddress(), bob.CommAddress())
	got, err := alice.Send(ctx, ci.ChannelID, big.NewInt(1))
	require.NoError(t, err)
	require.Equal(t, uint64(3), got.Version)
	require.Equal(t, new(big.Int).Sub(eth(5), big.NewInt(7)).String(), got.Balance.Mine)
	require.Equal(t, before+1, leaktest.ListeningSockets(t))

	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	require.NoError(t, n.Close(cctx))
	require.Equal(t, before, leaktest.ListeningSockets(t), "the node's close closes its port")
}
