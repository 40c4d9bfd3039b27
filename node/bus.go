package node

import (
	"context"
	"log/slog"

	"github.com/ethereum/go-ethereum/common"
	"perun.network/go-perun/client"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"

	"github.com/perund/perund/peer"
	"github.com/perund/perund/wireid"
)

// observingBus wraps a wire bus so that the session sees every incoming
// channel-update proposal the moment it arrives, before go-perun queues it
// behind the channel's lock. That is what lets the session detect two
// parties updating one channel at the same time (see collision.go).
//
// It also hands the answers to the session's own channel sync (sync.go) to
// the session instead of go-perun: onSync reports whether it took one.
type observingBus struct {
	wire.Bus
	onUpdate func(id [32]byte, version uint64)
	onSync   func(e *wire.Envelope) bool
}

func (b *observingBus) SubscribeClient(c wire.Consumer, addr map[wallet.BackendID]wire.Address) error {
	return b.Bus.SubscribeClient(&observingConsumer{Consumer: c, onUpdate: b.onUpdate, onSync: b.onSync}, addr)
}

type observingConsumer struct {
	wire.Consumer
	onUpdate func(id [32]byte, version uint64)
	onSync   func(e *wire.Envelope) bool
}

func (c *observingConsumer) Put(e *wire.Envelope) {
	if c.onSync(e) {
		return
	}
	if m, ok := e.Msg.(client.ChannelUpdateProposal); ok && m.Base().State != nil {
		c.onUpdate(m.Base().State.ID, m.Base().State.Version)
	}
	c.Consumer.Put(e)
}

// loggingDialer logs every dial to a peer that fails, so that a session's
// start can be seen not to dial peers that are not up.
type loggingDialer struct {
	*peer.Dialer
	log   *slog.Logger
	owner common.Address
}

// Dial dials the peer at addr.
func (d *loggingDialer) Dial(ctx context.Context, addr map[wallet.BackendID]wire.Address, ser wire.EnvelopeSerializer) (wirenet.Conn, error) {
	c, err := d.Dialer.Dial(ctx, addr, ser)
	if err != nil {
		peer := ""
		if a, ok := addr[wireid.BackendID].(*wireid.Address); ok {
			peer = a.Eth().Hex()
		}
		d.log.Debug("dial to peer failed", "session", d.owner.Hex(), "peer", peer, "err", err)
	}
	return c, err
}
