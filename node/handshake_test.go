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

// TestHandshakeSignatureChecked: a peer whose handshake signature does not
// match the address it claims is refused; an honest one gets through.
func TestHandshakeSignatureChecked(t *testing.T) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	n := v.node(t, map[string]string{keyBob: "bob"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob, err := n.OpenSession(ctx, addrs[1], "bob", false)
	require.NoError(t, err)
	target := wireid.NewAddress(addrs[1])

	aliceKey, _ := crypto.HexToECDSA(keyAlice)
	malloryKey, err := crypto.GenerateKey()
	require.NoError(t, err)
	honest := wireid.NewAccount(aliceKey)
	tests := []struct {
		name string
		id   map[wallet.BackendID]wire.Account
		ok   bool
	}{
		{"honest peer", honest.Map(), true},
		{"claims alice, signs as mallory", (&liar{claim: wireid.NewAddress(addrs[0]), signer: wireid.NewAccount(malloryKey)}).Map(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := wiresimple.NewTCPDialer(5*time.Second, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec
			d.Register(target.Map(), bob.CommAddress())
			bus := wirenet.NewBus(tc.id, d, protobuf.Serializer())
			defer bus.Close()
			pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
			defer pcancel()
			sender := tc.id[wireid.BackendID].Address()
			err := bus.Publish(pctx, &wire.Envelope{
				Sender:    map[wallet.BackendID]wire.Address{wireid.BackendID: sender},
				Recipient: target.Map(),
				Msg:       wire.NewPingMsg(),
			})
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}
