package node_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/contacts"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
)

// fakePeer listens on 127.0.0.1 and treats every connection with serve.
func fakePeer(t *testing.T, serve func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func selfSignedCert(t *testing.T) tls.Certificate { return perundtest.SelfSigned(t).TLS }

// requirePeerError: err is one of the API's peer errors (1004, 1005, 1006).
func requirePeerError(t *testing.T, err error) {
	t.Helper()
	var (
		pu *node.PeerUnreachableError
		pr *node.PeerRejectedError
		to *node.TimeoutError
	)
	require.Error(t, err)
	require.True(t, errors.As(err, &pu) || errors.As(err, &pr) || errors.As(err, &to), "not a peer error: %T %v", err, err)
}

// TestPeerFaults: peers that are silent, speak garbage or vanish in the
// middle of an update give the caller a peer error (never a hang), and the
// channel with an honest peer stays usable throughout.
func TestPeerFaults(t *testing.T) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	na := v.node(t, map[string]string{keyAlice: "alice"})
	dirB := t.TempDir()
	nb := v.nodeIn(t, dirB, map[string]string{keyBob: "bob"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	alice, bob := loginPair(t, na, nb, addrs)
	bob.SetManualAccept(true)
	ci := openAccepted(ctx, t, alice, bob, eth(5), eth(5))
	p := paySeq{id: ci.ChannelID, amt: big.NewInt(1)}
	bobUps, err := bob.Hub().Subscribe(subscriptions.Updates)
	require.NoError(t, err)
	go func() { // bob accepts payments by hand, except while the test holds him
		for ev := range bobUps.Events() {
			if u := ev.(node.UpdateInfo); u.Status == node.StatusPending && u.Kind == node.KindPayment && u.Amount != "2" {
				_, _ = bob.RespondUpdate(ctx, u.UpdateID, true, "")
			}
		}
	}()
	p.pay(ctx, t, alice)

	cert := selfSignedCert(t)
	garbage := make([]byte, 4096)
	_, _ = rand.Read(garbage)
	faults := []struct {
		name  string
		serve func(net.Conn)
	}{
		{"silent", func(c net.Conn) { _, _ = c.Read(make([]byte, 1)); <-ctx.Done() }},
		{"garbage", func(c net.Conn) { _, _ = c.Write(garbage); <-ctx.Done() }},
		{"hangs up", func(c net.Conn) {}},
		{"garbage over TLS", func(c net.Conn) {
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
			if tc.Handshake() == nil {
				_, _ = tc.Write(garbage)
			}
			<-ctx.Done()
		}},
	}
	for i, f := range faults {
		t.Run("peer "+f.name, func(t *testing.T) {
			addr := fakePeer(t, f.serve)
			k, _ := crypto.GenerateKey()
			alias := "fake" + string(rune('a'+i))
			_, err := alice.AddContact(contacts.Contact{Alias: alias, Address: crypto.PubkeyToAddress(k.PublicKey), CommAddress: addr})
			require.NoError(t, err)
			octx, ocancel := context.WithTimeout(ctx, time.Minute)
			defer ocancel()
			start := time.Now()
			_, err = alice.OpenChannel(octx, alias, "ETH", big.NewInt(1), big.NewInt(0), 0)
			t.Logf("%s after %v", err, time.Since(start).Round(time.Millisecond))
			requirePeerError(t, err)
			require.NoError(t, octx.Err(), "bounded by the node's own timeouts")
			p.pay(ctx, t, alice)
		})
	}

	t.Run("garbage to our peer port", func(t *testing.T) {
		for _, useTLS := range []bool{false, true} {
			c, err := net.Dial("tcp", alice.CommAddress())
			require.NoError(t, err)
			if useTLS {
				tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) //nolint:gosec
				require.NoError(t, tc.Handshake())
				_, _ = tc.Write(garbage)
				tc.Close()
			} else {
				_, _ = c.Write(garbage)
				c.Close()
			}
		}
		p.pay(ctx, t, alice)
		p.pay(ctx, t, bob)
	})

	t.Run("peer vanishes mid-update", func(t *testing.T) {
		res := make(chan error, 1)
		go func() { _, err := alice.Send(ctx, ci.ChannelID, big.NewInt(2)); res <- err }()
		require.Eventually(t, func() bool { return len(bob.Updates()) == 1 || len(res) > 0 },
			10*time.Second, 5*time.Millisecond, "bob holds the update")
		select {
		case err := <-res:
			t.Fatalf("send ended early: %v", err)
		default:
		}
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		defer ccancel()
		require.NoError(t, nb.Close(cctx))
		requirePeerError(t, perundtest.Recv(t, res, time.Minute, "the send returns"))

		nb2 := v.nodeIn(t, dirB, map[string]string{keyBob: "bob"})
		bob2, err := nb2.OpenSession(ctx, addrs[1], "bob", false)
		require.NoError(t, err)
		got, err := bob2.Channel(ci.ChannelID)
		require.NoError(t, err)
		require.Equal(t, p.version, got.Version, "the unsigned update is gone on both sides")
		p.pay(ctx, t, alice)
		p.pay(ctx, t, bob2)
	})
}
