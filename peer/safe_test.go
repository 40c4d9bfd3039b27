package peer

import (
	"context"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	ethwallet "github.com/perun-network/perun-eth-backend/wallet"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/client"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"

	"github.com/perund/perund/wireid"
)

// crashProposal is a ledger-channel proposal whose participant address is
// under a backend id nobody registered: go-perun's protobuf decoder
// dereferences nil on it.
func crashProposal(t *testing.T, from, to *wireid.Address) *wire.Envelope {
	t.Helper()
	asset := ethchannel.NewAsset(big.NewInt(1337), common.Address{1})
	alloc := channel.NewAllocation(2, []wallet.BackendID{ethwallet.BackendID}, asset)
	alloc.SetAssetBalances(asset, []channel.Bal{big.NewInt(1), big.NewInt(1)})
	prop, err := client.NewLedgerChannelProposal(60,
		map[wallet.BackendID]wallet.Address{7: ethwallet.AsWalletAddr(from.Eth())}, alloc,
		[]map[wallet.BackendID]wire.Address{from.Map(), to.Map()}, client.WithRandomNonce())
	require.NoError(t, err)
	return env(from, to, prop)
}

// A frame that makes go-perun's decoder panic closes the connection that
// sent it, before and after authentication; the node and its users go on.
func TestUndecodableEnvelope(t *testing.T) {
	n := newNode(t, nil)
	defer n.close(t)
	bob := n.login(t)
	defer bob.logout(t)
	carolNode := newNode(t, nil)
	defer carolNode.close(t)
	carol := carolNode.login(t)
	defer carol.logout(t)
	carolNode.know(bob, n)
	mallory := newAccount(t)
	maddr := mallory.Address().(*wireid.Address)

	t.Run("first frame", func(t *testing.T) {
		r := rawDial(t, n.addr())
		defer r.close()
		require.NoError(t, r.send(crashProposal(t, maddr, bob.addr)))
		r.requireClosed(t)
	})
	t.Run("after authentication", func(t *testing.T) {
		r := rawDial(t, n.addr())
		defer r.close()
		require.NoError(t, r.send(r.auth(t, mallory, bob.addr)))
		_, err := r.recv() // bob's answer
		require.NoError(t, err)
		require.NoError(t, r.send(crashProposal(t, maddr, bob.addr)))
		r.requireClosed(t)
	})
	// bob is still reachable.
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	require.NoError(t, carol.publish(ctx, bob.addr, wire.NewPingMsg()))
	bob.expect(t, carol.addr)
}
