package peer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/wireid"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"
	"perun.network/go-perun/wire/protobuf"
)

// TestInProcess: two users of one node whose Dialers dial in process reach
// each other without a TCP connection (the Port accepts none), both ways,
// after a logout and login too; a user of another node is still dialled
// over TCP with the bound handshake; an envelope with a foreign sender on
// an in-process connection closes it.
func TestInProcess(t *testing.T) {
	n, other := newNode(t, nil), newNode(t, nil)
	defer n.close(t)
	defer other.close(t)
	login := func(node *testNode) *testUser {
		acc := newAccount(t)
		ln, err := node.port.Register(acc)
		require.NoError(t, err)
		u := &testUser{acc: acc, addr: acc.Address().(*wireid.Address), ln: ln, recv: wire.NewReceiver(), listen: make(chan struct{})}
		u.bus = wirenet.NewBus(acc.Map(), NewDialer(acc, node.hosts, 2*time.Second).InProcess(node.port), protobuf.Serializer())
		go func() { defer close(u.listen); u.bus.Listen(ln) }()
		require.NoError(t, u.bus.SubscribeClient(u.recv, u.addr.Map()))
		return u
	}
	alice, bob, carol := login(n), login(n), login(other)
	n.know(carol, other)
	other.know(alice, n)
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()

	// bob is in no Hosts table: a TCP dial could not find him, so these
	// envelopes can only have gone in process.
	require.NoError(t, alice.publish(ctx, bob.addr, wire.NewPingMsg()))
	bob.expect(t, alice.addr)
	require.NoError(t, bob.publish(ctx, alice.addr, wire.NewPongMsg()))
	alice.expect(t, bob.addr)
	require.NotContains(t, n.log.String(), "remote=", "no TCP connection reached the Port")

	require.NoError(t, alice.publish(ctx, carol.addr, wire.NewPingMsg()))
	carol.expect(t, alice.addr)

	bob.logout(t)
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	require.Error(t, alice.publish(short, bob.addr, wire.NewPingMsg()), "bob is logged out")
	cancelShort()
	bob2 := login(n)
	require.NoError(t, bob2.publish(ctx, alice.addr, wire.NewPingMsg()))
	alice.expect(t, bob2.addr)
	alice.logout(t)
	bob2.logout(t)
	carol.logout(t)
}

// TestInProcessPairEnforced: an in-process connection carries only
// envelopes between its pair.
func TestInProcessPairEnforced(t *testing.T) {
	n := newNode(t, nil)
	defer n.close(t)
	a, b, c := newAccount(t), newAccount(t), newAccount(t)
	lb, err := n.port.Register(b)
	require.NoError(t, err)
	defer lb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	accepted := make(chan wirenet.Conn, 1)
	go func() {
		c, _ := lb.Accept(protobuf.Serializer())
		accepted <- c
	}()
	ab, local, err := n.port.dialLocal(ctx, a, b.Address().(*wireid.Address), protobuf.Serializer())
	require.True(t, local)
	require.NoError(t, err)
	ba := <-accepted
	require.NotNil(t, ba)
	forged := env(c.Address().(*wireid.Address), b.Address().(*wireid.Address), wire.NewPingMsg())
	go func() { _ = ab.Send(forged) }()
	_, err = ba.Recv()
	require.ErrorIs(t, err, ErrAuth)
	_, local, _ = n.port.dialLocal(ctx, a, c.Address().(*wireid.Address), protobuf.Serializer())
	require.False(t, local, "c is not registered here")
	require.NoError(t, ab.Close())
	require.NoError(t, ab.Close(), "a second close does nothing (go-perun's bus closes twice)")
}
