package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
)

// TestUnfundableProposal: alice asks bob to put in more than he holds on
// chain. Bob's proposal says it is not fundable and by how much; accepting
// is refused with insufficient funds before any transaction and leaves the
// proposal pending; bob rejects it and alice hears so.
func TestUnfundableProposal(t *testing.T) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	na := v.node(t, map[string]string{keyAlice: "alice"})
	nb := v.node(t, map[string]string{keyBob: "bob"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, bob := loginPair(t, na, nb, addrs)
	props, err := bob.Hub().Subscribe(subscriptions.Proposals)
	require.NoError(t, err)

	opened := make(chan error, 1)
	go func() {
		_, err := alice.OpenChannel(ctx, "bob", "ETH", eth(1), eth(5000), 0)
		opened <- err
	}()
	var pi node.ProposalInfo
	select {
	case ev := <-props.Events():
		pi = ev.(node.ProposalInfo)
	case <-ctx.Done():
		t.Fatal("no proposal")
	}
	require.False(t, pi.Fundable)
	bal, err := nb.Balance(ctx, addrs[1])
	require.NoError(t, err)
	want := eth(5000)
	want.Sub(want, bal)
	require.Equal(t, want.String(), pi.Shortfall, "the shortfall is what bob lacks")

	_, err = bob.RespondProposal(ctx, pi.ProposalID, true, "")
	var ie *node.InsufficientFundsError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, eth(5000).String(), ie.Needed)
	require.Equal(t, bal.String(), ie.Available)
	require.Len(t, bob.Proposals(), 1, "still pending after the refused accept")
	after, err := nb.Balance(ctx, addrs[1])
	require.NoError(t, err)
	require.Equal(t, bal.String(), after.String(), "no transaction was sent")

	_, err = bob.RespondProposal(ctx, pi.ProposalID, false, "not enough funds")
	require.NoError(t, err)
	var pr *node.PeerRejectedError
	require.ErrorAs(t, <-opened, &pr)
	require.Empty(t, bob.Proposals())
}
