package peer

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"

	"github.com/perund/perund/wireid"
)

// capture makes mallory (a fresh key) authenticate to u at n and returns
// u's authentication signature from that connection.
func capture(t *testing.T, mallory *wireid.Account, n *testNode, u *testUser) []byte {
	t.Helper()
	r := rawDial(t, n.addr())
	defer r.close()
	require.NoError(t, r.send(r.auth(t, mallory, u.addr)))
	e, err := r.recv()
	require.NoError(t, err, "mallory, an honest newcomer, is answered")
	sig := e.Msg.(*wire.AuthResponseMsg).Signature
	require.Len(t, sig, BoundSigLen)
	require.NoError(t, verifyBound(r.exp, u.addr, mallory.Address().(*wireid.Address), sig[wireid.SigLen:]),
		"the reply is bound to mallory's connection")
	require.NoError(t, verifyStatic(u.addr, sig[:wireid.SigLen]))
	return sig
}

// rawServer accepts one TLS connection and hands it over as a rawPeer.
func rawServer(t *testing.T) (addr string, conn <-chan *rawPeer, stop func()) {
	t.Helper()
	cert, err := NewCertificate()
	require.NoError(t, err)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS(cert))
	require.NoError(t, err)
	ch := make(chan *rawPeer, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tc := c.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(recvTimeout))
		if err := tc.Handshake(); err != nil {
			tc.Close()
			return
		}
		exp, err := exporter(tc)
		if err != nil {
			tc.Close()
			return
		}
		ch <- &rawPeer{tc: tc, exp: exp}
	}()
	return ln.Addr().String(), ch, func() {
		ln.Close()
		<-done
		select {
		case r := <-ch:
			r.close()
		default:
		}
	}
}

// TestReplay: what mallory learns by talking to bob does not let her pass
// for bob anywhere else.
func TestReplay(t *testing.T) {
	nB := newNode(t, nil)
	defer nB.close(t)
	bob := nB.login(t)
	defer bob.logout(t)
	nC := newNode(t, nil)
	defer nC.close(t)
	carol := nC.login(t)
	defer carol.logout(t)
	// A node that lets bob in with the legacy static signature.
	nL := newNode(t, func(c *Config) { c.LegacyPeers = []common.Address{bob.addr.Eth()} })
	defer nL.close(t)
	dave := nL.login(t)
	defer dave.logout(t)

	mallory := newAccount(t)
	stolen := capture(t, mallory, nB, bob)
	static := stolen[:wireid.SigLen]

	tests := []struct {
		name     string
		at       *testNode
		to       *testUser
		sig      func(r *rawPeer) []byte
		accepted bool
		why      string
	}{
		{"bob's whole signature to carol", nC, carol, func(*rawPeer) []byte { return stolen }, false, "binding"},
		{"bob's static half to carol", nC, carol, func(*rawPeer) []byte { return static }, false, "unbound (replayable)"},
		{"bob's static half with mallory's binding", nC, carol, func(r *rawPeer) []byte {
			b, err := signBound(mallory, r.exp, carol.addr)
			require.NoError(t, err)
			return append(append([]byte{}, static...), b...)
		}, false, "binding"},
		{"bob's whole signature back to bob's own node", nB, bob, func(*rawPeer) []byte { return stolen }, false, "dialed itself"},
		// The documented hole of the legacy option.
		{"bob's static half to a Port allowing bob as legacy", nL, dave, func(*rawPeer) []byte { return static }, true, "legacy (replayable)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDial(t, tc.at.addr())
			defer r.close()
			require.NoError(t, r.send(env(bob.addr, tc.to.addr, &wire.AuthResponseMsg{Signature: tc.sig(r)})))
			tc.at.log.waitLog(t, tc.why)
			if !tc.accepted {
				r.requireClosed(t)
				tc.to.expectNothing(t, 100*time.Millisecond)
				return
			}
			e, err := r.recv()
			require.NoError(t, err, "the legacy Port answers the replay")
			require.Len(t, e.Msg.(*wire.AuthResponseMsg).Signature, wireid.SigLen, "and without a binding")
			require.NoError(t, r.send(env(bob.addr, tc.to.addr, wire.NewPingMsg())))
			tc.to.expect(t, bob.addr)
		})
	}
}

// relay is a man in the middle that terminates TLS on both sides and
// forwards the plaintext unchanged in both directions.
type relay struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newRelay(t *testing.T, upstream string) *relay {
	t.Helper()
	cert, err := NewCertificate()
	require.NoError(t, err)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS(cert))
	require.NoError(t, err)
	r := &relay{ln: ln}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := (&tls.Dialer{Config: clientTLS()}).DialContext(context.Background(), "tcp", upstream)
			if err != nil {
				down.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, down, up)
			r.mu.Unlock()
			r.wg.Add(2)
			go func() { defer r.wg.Done(); _, _ = io.Copy(up, down); up.Close() }()
			go func() { defer r.wg.Done(); _, _ = io.Copy(down, up); down.Close() }()
		}
	}()
	return r
}

func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// TestManInTheMiddle: a relay that terminates TLS towards alice and towards
// bob and forwards every byte is refused (the two connections' exporters
// differ); so is a server that answers alice with bob's reply from another
// connection.
func TestManInTheMiddle(t *testing.T) {
	nA, nB := newNode(t, nil), newNode(t, nil)
	defer nB.close(t)
	defer nA.close(t)
	alice, bob := nA.login(t), nB.login(t)
	defer bob.logout(t)
	defer alice.logout(t)

	t.Run("relaying man in the middle", func(t *testing.T) {
		mitm := newRelay(t, nB.addr())
		defer mitm.close()
		nA.hosts.Set(bob.addr.Eth(), mitm.ln.Addr().String())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		require.Error(t, alice.publish(ctx, bob.addr, wire.NewPingMsg()))
		nB.log.waitLog(t, "binding of "+alice.addr.String())
		bob.expectNothing(t, 100*time.Millisecond)
	})

	t.Run("replayed reply", func(t *testing.T) {
		stolen := capture(t, newAccount(t), nB, bob)
		addr, conns, stop := rawServer(t)
		defer stop()
		nA.hosts.Set(bob.addr.Eth(), addr)
		errc := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			errc <- alice.publish(ctx, bob.addr, wire.NewPingMsg())
		}()
		var fake *rawPeer
		select {
		case fake = <-conns:
		case <-time.After(recvTimeout):
			t.Fatal("alice did not dial")
		}
		e, err := fake.recv()
		require.NoError(t, err)
		require.Len(t, e.Msg.(*wire.AuthResponseMsg).Signature, BoundSigLen)
		require.NoError(t, fake.send(env(bob.addr, alice.addr, &wire.AuthResponseMsg{Signature: stolen})))
		fake.requireClosed(t)
		err = <-errc
		require.ErrorContains(t, err, "binding of "+bob.addr.String())
	})
}

// TestPairEnforced: once authenticated, a connection carries envelopes of
// the authenticated pair only, in both directions.
func TestPairEnforced(t *testing.T) {
	n := newNode(t, nil)
	defer n.close(t)
	carol, alice := n.login(t), n.login(t)
	defer alice.logout(t)
	defer carol.logout(t)
	mallory := newAccount(t)
	mAddr := mallory.Address().(*wireid.Address)
	bob := newAccount(t).Address().(*wireid.Address)

	t.Run("towards the Port", func(t *testing.T) {
		tests := []struct {
			name     string
			env      *wire.Envelope
			to       *testUser
			accepted bool
		}{
			{"authenticated pair", env(mAddr, carol.addr, wire.NewPingMsg()), carol, true},
			{"another sender", env(bob, carol.addr, wire.NewPingMsg()), carol, false},
			{"another recipient on the same Port", env(mAddr, alice.addr, wire.NewPingMsg()), alice, false},
			{"two senders", &wire.Envelope{Sender: map[wallet.BackendID]wire.Address{0: mAddr, 1: bob}, Recipient: carol.addr.Map(), Msg: wire.NewPingMsg()}, carol, false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := rawDial(t, n.addr())
				defer r.close()
				require.NoError(t, r.send(r.auth(t, mallory, carol.addr)))
				_, err := r.recv()
				require.NoError(t, err)
				require.NoError(t, r.send(tc.env))
				if tc.accepted {
					tc.to.expect(t, mAddr)
					return
				}
				r.requireClosed(t)
				tc.to.expectNothing(t, 100*time.Millisecond)
			})
		}
	})

	t.Run("towards the Dialer", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			other    bool // the fake bob sends as mallory
			accepted bool
		}{
			{"authenticated pair", false, true},
			{"another sender", true, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				// A fresh bob each time, so that alice's bus dials anew.
				bobAcc := newAccount(t)
				bob := bobAcc.Address().(*wireid.Address)
				from := bob
				if tc.other {
					from = mAddr
				}
				addr, conns, stop := rawServer(t)
				defer stop()
				n.hosts.Set(bob.Eth(), addr)
				errc := make(chan error, 1)
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
					defer cancel()
					errc <- alice.publish(ctx, bob, wire.NewPingMsg())
				}()
				var fake *rawPeer
				select {
				case fake = <-conns:
				case <-time.After(recvTimeout):
					t.Fatal("alice did not dial")
				}
				e, err := fake.recv()
				require.NoError(t, err)
				sig := e.Msg.(*wire.AuthResponseMsg).Signature
				require.NoError(t, verifyBound(fake.exp, alice.addr, bob, sig[wireid.SigLen:]), "alice binds her handshake")
				require.NoError(t, fake.send(fake.auth(t, bobAcc, alice.addr)))
				e, err = fake.recv()
				require.NoError(t, err, "alice sends her ping after the handshake")
				require.IsType(t, &wire.PingMsg{}, e.Msg)
				require.NoError(t, <-errc)
				require.NoError(t, fake.send(env(from, alice.addr, wire.NewPingMsg())))
				if tc.accepted {
					alice.expect(t, bob)
					return
				}
				fake.requireClosed(t)
				alice.expectNothing(t, 100*time.Millisecond)
			})
		}
	})
}
