package node_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"
	wiresimple "perun.network/go-perun/wire/net/simple"
	"perun.network/go-perun/wire/protobuf"

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

// TestHandshakeOfRunningNode: the node's peer port refuses go-perun's own,
// replayable handshake (a plain go-perun dialer) unless the sender is in
// comm.legacyPeers, refuses a signature that does not match the claimed
// address even for a listed peer, and accepts perund's bound handshake from
// anyone. A refusal is an error within the publish attempts, never a hang.
func TestHandshakeOfRunningNode(t *testing.T) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	rec, lg := newLogRecorder()
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
	tests := []struct {
		name   string
		id     map[wallet.BackendID]wire.Account
		dialer wirenet.Dialer
		ok     bool
	}{
		{"replayable handshake of an unlisted peer", mallory.Map(), plain(), false},
		{"replayable handshake of a legacy peer", alice.Map(), plain(), true},
		{"legacy peer claimed, signed as mallory", (&liar{claim: wireid.NewAddress(addrs[0]), signer: mallory}).Map(), plain(), false},
		{"bound handshake of an unlisted peer", mallory.Map(), bound(mallory), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			refused := rec.count("refused connection")
			bus := wirenet.NewBus(tc.id, tc.dialer, protobuf.Serializer())
			defer bus.Close()
			pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
			defer pcancel()
			sender := tc.id[wireid.BackendID].Address()
			start := time.Now()
			err := bus.Publish(pctx, &wire.Envelope{
				Sender:    map[wallet.BackendID]wire.Address{wireid.BackendID: sender},
				Recipient: target.Map(),
				Msg:       wire.NewPingMsg(),
			})
			t.Logf("publish: %v after %v", err, time.Since(start).Round(time.Millisecond))
			if tc.ok {
				require.NoError(t, err)
				require.Equal(t, refused, rec.count("refused connection"))
				return
			}
			require.Error(t, err)
			require.NoError(t, pctx.Err(), "refused, not left hanging")
			require.Greater(t, rec.count("refused connection"), refused, "the peer port refused it")
		})
	}
	require.Equal(t, 1, rec.count("accepted a legacy (replayable) handshake", "peer", addrs[0].Hex(), "user", addrs[1].Hex()))
}
