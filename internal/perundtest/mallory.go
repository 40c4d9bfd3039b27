package perundtest

import (
	"context"
	"crypto/ecdsa"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"
	"perun.network/go-perun/wire/protobuf"

	"github.com/perund/perund/peer"
	"github.com/perund/perund/wireid"
)

// Mallory is the kit's hostile peer: a go-perun bus on a peer port of its
// own (perund's bound handshake, which a node accepts from anyone), with
// no go-perun client behind it. The test sends whatever messages it likes
// (crafted proposals, updates, sync messages) and reads every message
// addressed to it.
type Mallory struct {
	// Addr is mallory's address.
	Addr common.Address
	// Hosts tells mallory where to dial a user (Hosts.Set).
	Hosts *peer.Hosts
	bus   *wirenet.Bus
	recv  *wire.Receiver
}

// NewMallory starts mallory with key listening at listen; it stops with
// the test.
func NewMallory(t testing.TB, key *ecdsa.PrivateKey, listen string) *Mallory {
	t.Helper()
	cert, err := peer.NewCertificate()
	require.NoError(t, err)
	port, err := peer.Listen(peer.Config{Addr: listen, Certificate: cert})
	require.NoError(t, err)
	acc := wireid.NewAccount(key)
	l, err := port.Register(acc)
	require.NoError(t, err)
	m := &Mallory{Addr: crypto.PubkeyToAddress(key.PublicKey), Hosts: peer.NewHosts(), recv: wire.NewReceiver()}
	m.bus = wirenet.NewBus(acc.Map(), peer.NewDialer(acc, m.Hosts, 5*time.Second), protobuf.Serializer())
	require.NoError(t, m.bus.SubscribeClient(m.recv, wireid.NewAddress(m.Addr).Map()))
	listening := make(chan struct{})
	go func() { defer close(listening); m.bus.Listen(l) }()
	t.Cleanup(func() {
		_ = m.recv.Close()
		_ = m.bus.Close()
		<-listening
		_ = port.Close()
	})
	return m
}

// Send sends msg to the user to.
func (m *Mallory) Send(ctx context.Context, to common.Address, msg wire.Msg) error {
	return m.bus.Publish(ctx, &wire.Envelope{
		Sender: wireid.NewAddress(m.Addr).Map(), Recipient: wireid.NewAddress(to).Map(), Msg: msg,
	})
}

// Next returns the next message that match accepts, skipping others,
// until ctx ends.
func (m *Mallory) Next(ctx context.Context, match func(*wire.Envelope) bool) (*wire.Envelope, error) {
	for {
		e, err := m.recv.Next(ctx)
		if err != nil {
			return nil, err
		}
		if match(e) {
			return e, nil
		}
	}
}
