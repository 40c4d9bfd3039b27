package peer

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"perun.network/go-perun/wire"

	"github.com/perund/perund/internal/leaktest"
	"github.com/perund/perund/wireid"
)

// TestOnePortManyUsers: alice and bob behind one Port, carol behind
// another dials both at the same host:port; messages flow every way; each
// node has exactly one listening socket.
func TestOnePortManyUsers(t *testing.T) {
	before := leaktest.ListeningSockets(t)
	n1, n2 := newNode(t, nil), newNode(t, nil)
	defer n2.close(t)
	defer n1.close(t)
	alice, bob, carol := n1.login(t), n1.login(t), n2.login(t)
	defer carol.logout(t)
	defer alice.logout(t)
	require.Equal(t, 2, leaktest.ListeningSockets(t)-before, "one listening socket per Port, whatever the number of users")

	n2.know(alice, n1)
	n2.know(bob, n1)
	n1.know(carol, n2)
	n1.know(alice, n1)
	n1.know(bob, n1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	pairs := []struct {
		name     string
		from, to *testUser
	}{
		{"carol to alice (carol dials)", carol, alice},
		{"carol to bob (carol dials, same host:port)", carol, bob},
		{"alice to carol (reuses carol's connection)", alice, carol},
		{"bob to carol", bob, carol},
		{"alice to bob (both on one Port)", alice, bob},
		{"bob to alice", bob, alice},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			require.NoError(t, p.from.publish(ctx, p.to.addr, wire.NewPingMsg()))
			e := p.to.expect(t, p.from.addr)
			require.IsType(t, &wire.PingMsg{}, e.Msg)
		})
	}

	t.Run("large envelope", func(t *testing.T) {
		// Larger than a TLS record early in a connection (about 1.2 KiB):
		// go-perun's decoder alone would cut it (see fullReader).
		big := bytes.Repeat([]byte{0xAB}, 20_000)
		require.NoError(t, carol.publish(ctx, alice.addr, &wire.AuthResponseMsg{Signature: big}))
		e := alice.expect(t, carol.addr)
		require.Equal(t, big, e.Msg.(*wire.AuthResponseMsg).Signature)
	})

	t.Run("a logged-out user does not close the port", func(t *testing.T) {
		bob.logout(t)
		// dave (a new user of node 2) dials bob: refused at once.
		dave := n2.login(t)
		defer dave.logout(t)
		n2.know(bob, n1)
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		defer pcancel()
		start := time.Now()
		require.Error(t, dave.publish(pctx, bob.addr, wire.NewPingMsg()), "bob is logged out")
		require.Less(t, time.Since(start), 2*time.Second)
		n1.log.waitLog(t, "not logged in")
		// alice, on the same Port, is still reachable.
		require.NoError(t, carol.publish(ctx, alice.addr, wire.NewPingMsg()))
		alice.expect(t, carol.addr)
		// bob logs in again on the same Port; carol's bus redials him.
		bob = n1.loginAs(t, bob.acc)
		defer bob.logout(t)
		require.NoError(t, carol.publish(ctx, bob.addr, wire.NewPingMsg()))
		bob.expect(t, carol.addr)
	})
}

// TestRegister: one registration per user, none on a closed Port, and a
// Listener's Close only unregisters.
func TestRegister(t *testing.T) {
	n := newNode(t, nil)
	acc := newAccount(t)
	l, err := n.port.Register(acc)
	require.NoError(t, err)
	_, err = n.port.Register(acc)
	require.ErrorIs(t, err, ErrRegistered)
	require.NoError(t, l.Close())
	require.ErrorIs(t, l.Close(), ErrClosed)
	_, err = l.Accept(nil)
	require.ErrorIs(t, err, ErrClosed)
	l2, err := n.port.Register(acc)
	require.NoError(t, err, "registering again after Close")
	require.ErrorIs(t, l.Close(), ErrClosed, "the old Listener")
	require.Same(t, l2, n.port.user(acc.Address().(*wireid.Address).Eth()), "closing the old Listener leaves the new registration")
	n.close(t)
	require.ErrorIs(t, n.port.Close(), ErrClosed)
	_, err = l2.Accept(nil)
	require.ErrorIs(t, err, ErrClosed, "Accept fails once the Port is closed")
	_, err = n.port.Register(newAccount(t))
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, l2.Close())
}
