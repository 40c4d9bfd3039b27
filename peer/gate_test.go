package peer

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"perun.network/go-perun/wire"
)

// A user whose account's gate closed (a cluster node whose lease expired)
// sends nothing to a peer over an established connection, not even what
// was signed before; while the gate is open, messages flow.
func TestGateStopsSending(t *testing.T) {
	n1, n2 := newNode(t, nil), newNode(t, nil)
	var closed atomic.Bool
	errGate := errors.New("lease expired")
	alice := n1.loginAs(t, newAccount(t).WithGate(func() error {
		if closed.Load() {
			return errGate
		}
		return nil
	}))
	bob := n2.login(t)
	n1.know(bob, n2)
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	require.NoError(t, alice.publish(ctx, bob.addr, wire.NewPingMsg()))
	bob.expect(t, alice.addr)

	closed.Store(true)
	// go-perun's bus redials and tries again until its context ends.
	pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer pcancel()
	require.ErrorIs(t, alice.publish(pctx, bob.addr, wire.NewPingMsg()), errGate)
	bob.expectNothing(t, 300*time.Millisecond)
	alice.logout(t)
	bob.logout(t)
	n1.close(t)
	n2.close(t)
}
