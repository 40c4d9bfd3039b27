package peer

import (
	"context"
	"crypto/tls"
	"io"
	"math/rand"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"
	"perun.network/go-perun/wire/protobuf"
	wiretest "perun.network/go-perun/wire/test"

	"github.com/perund/perund/wireid"
)

// blackhole accepts TCP connections and never answers (a TLS handshake
// into it hangs).
func blackhole(t *testing.T) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String(), func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
}

func TestDialer(t *testing.T) {
	hosts := NewHosts()
	peer := newAccount(t).Address().(*wireid.Address)
	ser := protobuf.Serializer()
	hole, stopHole := blackhole(t)
	defer stopHole()
	n := newNode(t, nil)
	defer n.close(t)

	t.Run("unknown peer", func(t *testing.T) {
		d := NewDialer(newAccount(t), hosts, time.Second)
		defer d.Close()
		_, err := d.Dial(context.Background(), peer.Map(), ser)
		require.ErrorIs(t, err, ErrUnknownPeer)
	})
	t.Run("foreign address map", func(t *testing.T) {
		d := NewDialer(newAccount(t), hosts, time.Second)
		defer d.Close()
		_, err := d.Dial(context.Background(), map[wallet.BackendID]wire.Address{1: peer}, ser)
		require.ErrorContains(t, err, "without a wire identity")
	})
	t.Run("timeout", func(t *testing.T) {
		hosts.Set(peer.Eth(), hole)
		d := NewDialer(newAccount(t), hosts, 200*time.Millisecond)
		defer d.Close()
		start := time.Now()
		_, err := d.Dial(context.Background(), peer.Map(), ser)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Less(t, time.Since(start), time.Second)
	})
	t.Run("caller's context", func(t *testing.T) {
		hosts.Set(peer.Eth(), hole)
		d := NewDialer(newAccount(t), hosts, 0)
		defer d.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := d.Dial(ctx, peer.Map(), ser)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("Close aborts a dial and only its own", func(t *testing.T) {
		hosts.Set(peer.Eth(), hole)
		other := newAccount(t).Address().(*wireid.Address)
		hosts.Set(other.Eth(), n.addr())
		d1, d2 := NewDialer(newAccount(t), hosts, 0), NewDialer(newAccount(t), hosts, 0)
		defer d2.Close()
		errc := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
			defer cancel()
			_, err := d1.Dial(ctx, peer.Map(), ser)
			errc <- err
		}()
		time.Sleep(50 * time.Millisecond) // let the dial start
		require.NoError(t, d1.Close())
		require.ErrorIs(t, d1.Close(), ErrClosed)
		select {
		case err := <-errc:
			require.ErrorIs(t, err, ErrClosed)
		case <-time.After(time.Second):
			t.Fatal("Close did not abort the dial")
		}
		_, err := d1.Dial(context.Background(), other.Map(), ser)
		require.ErrorIs(t, err, ErrClosed)
		ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
		defer cancel()
		c, err := d2.Dial(ctx, other.Map(), ser)
		require.NoError(t, err, "another user's Dialer still dials")
		require.NoError(t, c.Close())
		require.Error(t, c.Close(), "a second Close of a connection fails, as wirenet.Conn requires")
	})
}

// fakeTLSPeer is a TLS server that treats each connection with serve after
// the TLS handshake.
func fakeTLSPeer(t *testing.T, serve func(net.Conn)) (addr string, stop func()) {
	t.Helper()
	cert, err := NewCertificate()
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				tc := tls.Server(c, serverTLS(cert))
				_ = tc.SetDeadline(time.Now().Add(recvTimeout))
				if tc.Handshake() == nil {
					serve(tc)
				}
			}()
		}
	}()
	return ln.Addr().String(), func() { ln.Close(); wg.Wait() }
}

// TestDialerBoundsTheReply: a peer that completes TLS but then answers the
// authentication with garbage (a frame longer than 1 KiB announced) or not
// at all fails go-perun's address exchange within the Dialer's reply
// timeout, even though go-perun itself waits as long as the caller's
// context.
func TestDialerBoundsTheReply(t *testing.T) {
	garbage := make([]byte, 4096)
	garbage[0], garbage[1] = 0xff, 0xf0 // a 65520-byte frame announced
	tests := []struct {
		name  string
		serve func(net.Conn)
	}{
		{"garbage", func(c net.Conn) { _, _ = c.Write(garbage); _, _ = io.Copy(io.Discard, c) }},
		{"silent", func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, stop := fakeTLSPeer(t, tc.serve)
			defer stop()
			peer := newAccount(t).Address().(*wireid.Address)
			hosts := NewHosts()
			hosts.Set(peer.Eth(), addr)
			self := newAccount(t)
			d := NewDialer(self, hosts, time.Second)
			d.replyTimeout = 300 * time.Millisecond
			defer d.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			c, err := d.Dial(ctx, peer.Map(), protobuf.Serializer())
			require.NoError(t, err)
			defer c.Close()
			err = wirenet.ExchangeAddrsActive(ctx, self.Map(), peer.Map(), c)
			t.Logf("%v after %v", err, time.Since(start).Round(time.Millisecond))
			require.Error(t, err)
			require.NoError(t, ctx.Err())
			require.Less(t, time.Since(start), 3*time.Second)
		})
	}
}

// TestHosts: the table is shared and last writer wins.
func TestHosts(t *testing.T) {
	h := NewHosts()
	a := newAccount(t).Address().(*wireid.Address).Eth()
	_, ok := h.Lookup(a)
	require.False(t, ok)
	h.Set(a, "127.0.0.1:1")
	h.Set(a, "127.0.0.1:2")
	hp, ok := h.Lookup(a)
	require.True(t, ok)
	require.Equal(t, "127.0.0.1:2", hp)
	h.Delete(a)
	_, ok = h.Lookup(a)
	require.False(t, ok)
}

// TestGoPerunBusConformance runs go-perun's own wire bus test
// (wire/test.GenericBusTest: every client sends to every other, before and
// after subscribing, nothing extra arrives) over net.Buses on Ports and
// Dialers: four users behind two Ports.
func TestGoPerunBusConformance(t *testing.T) {
	// go-perun's test draws accounts from its randomizer (set by
	// wire/net/simple's init); make them wire identities for this test.
	wiretest.SetNewRandomAccount(func(rng *rand.Rand) wire.Account {
		for {
			b := make([]byte, 32)
			rng.Read(b)
			if k, err := crypto.ToECDSA(b); err == nil {
				return wireid.NewAccount(k)
			}
		}
	})
	nodes := []*testNode{newNode(t, nil), newNode(t, nil)}
	hosts := NewHosts()
	var buses []*wirenet.Bus
	var listening sync.WaitGroup
	i := 0
	wiretest.GenericBusTest(t, func(id map[wallet.BackendID]wire.Account) (wire.Bus, wire.Bus) {
		acc := id[wireid.BackendID].(*wireid.Account)
		n := nodes[i%len(nodes)]
		i++
		l, err := n.port.Register(acc)
		require.NoError(t, err)
		hosts.Set(acc.Address().(*wireid.Address).Eth(), n.addr())
		bus := wirenet.NewBus(id, NewDialer(acc, hosts, time.Second), protobuf.Serializer())
		buses = append(buses, bus)
		listening.Add(1)
		go func() { defer listening.Done(); bus.Listen(l) }()
		return bus, bus
	}, 4, 5)
	for _, b := range buses {
		_ = b.Close()
	}
	listening.Wait()
	for _, n := range nodes {
		n.close(t)
	}
}
