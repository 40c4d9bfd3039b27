package node

import (
	"perun.network/go-perun/client"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"
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
