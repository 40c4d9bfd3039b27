package node_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"
	wiresimple "perun.network/go-perun/wire/net/simple"
	"perun.network/go-perun/wire/protobuf"

	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/peer"
	"github.com/perund/perund/wireid"
)

// liar claims one address and signs with another key.
type liar struct {
	claim  *wireid.Address
	signer *wireid.Account
}

func (l *liar) Address() wire.Address           { return l.claim }
func (l *liar) Sign(msg []byte) ([]byte, error) { return l.signer.Sign(msg) }
func (l *liar) Map() map[wallet.BackendID]wire.Account {
	return map[wallet.BackendID]wire.Account{wireid.BackendID: l}
}

// refusals passes the node's log on and hands the error of every "refused
// connection" record of the peer port to errs.
type refusals struct {
	slog.Handler
	errs chan error
}

func (r *refusals) Handle(ctx context.Context, rec slog.Record) error {
	// Recorded first, so that a test that receives the error also finds the
	// record.
	if err := r.Handler.Handle(ctx, rec); err != nil {
		return err
	}
	if rec.Message == "refused connection" {
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				err, _ := a.Value.Any().(error)
				select {
				case r.errs <- err:
				default: // a full channel fails the test's count, not the node
				}
			}
			return true
		})
	}
	return nil
}

func (r *refusals) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *refusals) WithGroup(string) slog.Handler      { return r }

// TestHandshakeOfRunningNode: the node's peer port refuses go-perun's own,
// replayable handshake (a plain go-perun dialer) unless the sender is in
// comm.legacyPeers, refuses a signature that does not match the claimed
// address even for a listed peer, and accepts perund's bound handshake from
// anyone. A refusal is the peer port's authentication error (peer.ErrAuth)
// for every attempt, never a hang, and the impostor's connection never
// reaches the user.
func TestHandshakeOfRunningNode(t *testing.T) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	rec, _ := newLogRecorder()
	errs := make(chan error, 100)
	lg := slog.New(&refusals{Handler: rec, errs: errs})
	n := v.nodeWith(t, t.TempDir(), map[string]string{keyBob: "bob"},
		testNode{log: lg, flags: map[string]any{"comm.legacyPeers": addrs[0].Hex()}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob, err := n.OpenSession(ctx, addrs[1], "bob", false)
	require.NoError(t, err)
	target := wireid.NewAddress(addrs[1])

	aliceKey, _ := crypto.HexToECDSA(keyAlice)
	malloryKey, err := crypto.GenerateKey()
	require.NoError(t, err)
	alice, mallory := wireid.NewAccount(aliceKey), wireid.NewAccount(malloryKey)
	plain := func() wirenet.Dialer {
		d := wiresimple.NewTCPDialer(5*time.Second, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec
		d.Register(target.Map(), bob.CommAddress())
		return d
	}
	bound := func(acc *wireid.Account) wirenet.Dialer {
		hosts := peer.NewHosts()
		hosts.Set(addrs[1], bob.CommAddress())
		return peer.NewDialer(acc, hosts, 5*time.Second)
	}
	// Each case dials as its own identity, so that a late refusal of an
	// earlier case's further attempts (go-perun's bus redials) is told apart
	// from this case's.
	strangerKey, err := crypto.GenerateKey()
	require.NoError(t, err)
	stranger := wireid.NewAccount(strangerKey)
	refusedFor := func(a wire.Address) int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		n := 0
		for _, r := range rec.recs {
			if r.msg == "refused connection" && strings.Contains(strings.ToLower(r.attrs["err"]), strings.ToLower(fmt.Sprint(a))) {
				n++
			}
		}
		return n
	}
	tests := []struct {
		name   string
		id     map[wallet.BackendID]wire.Account
		dialer wirenet.Dialer
		ok     bool
		reason string // of the refusal
	}{
		{"replayable handshake of an unlisted peer", mallory.Map(), plain(), false, crypto.PubkeyToAddress(malloryKey.PublicKey).Hex() + " sent an unbound (replayable) signature"},
		{"replayable handshake of a legacy peer", alice.Map(), plain(), true, ""},
		{"legacy peer claimed, signed as mallory", (&liar{claim: wireid.NewAddress(addrs[0]), signer: mallory}).Map(), plain(), false, "static signature of " + addrs[0].Hex()},
		{"bound handshake of an unlisted peer", stranger.Map(), bound(stranger), true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			refused := rec.count("refused connection")
			accepted := n.PeerStats().Accepted
			bus := wirenet.NewBus(tc.id, tc.dialer, protobuf.Serializer())
			defer bus.Close()
			pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
			defer pcancel()
			sender := tc.id[wireid.BackendID].Address()
			start := time.Now()
			published := make(chan error, 1)
			go func() {
				published <- bus.Publish(pctx, &wire.Envelope{
					Sender:    map[wallet.BackendID]wire.Address{wireid.BackendID: sender},
					Recipient: target.Map(),
					Msg:       wire.NewPingMsg(),
				})
			}()
			if tc.ok {
				err := perundtest.Recv(t, published, 30*time.Second, "the publish")
				t.Logf("publish: %v after %v", err, time.Since(start).Round(time.Millisecond))
				require.NoError(t, err)
				require.Zero(t, refusedFor(sender), "no connection of %v was refused", sender)
				require.Eventually(t, func() bool { return n.PeerStats().Accepted > accepted }, 10*time.Second, 5*time.Millisecond,
					"the connection reached bob")
				return
			}
		wait:
			for {
				select {
				case err := <-errs:
					require.ErrorIs(t, err, peer.ErrAuth, "every attempt is refused for its handshake")
					if !strings.Contains(err.Error(), tc.reason) {
						continue // an earlier case's late attempt
					}
					t.Logf("refused: %v after %v", err, time.Since(start).Round(time.Millisecond))
					break wait
				case err := <-published:
					t.Fatalf("publish ended without a refusal by the peer port: %v", err)
				case <-pctx.Done():
					t.Fatal("the peer port did not refuse the handshake")
				}
			}
			pcancel() // go-perun's further attempts would be refused alike
			require.Error(t, <-published)
			require.Greater(t, rec.count("refused connection"), refused, "the peer port refused it")
			require.Equal(t, accepted, n.PeerStats().Accepted, "the impostor's message never reached bob")
		})
	}
	require.Equal(t, 1, rec.count("accepted a legacy (replayable) handshake", "peer", addrs[0].Hex(), "user", addrs[1].Hex()))
}
