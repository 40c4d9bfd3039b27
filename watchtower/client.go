package watchtower

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ethereum/go-ethereum/common"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/watcher"
)

// ClientWatcher is the watcher.Watcher of one user's go-perun client. It
// attaches the client's channels to the node's watch instead of watching
// them itself: states the client publishes go to the tower, the tower's
// events come back to the client and to the session's handler, and
// StopWatching (the client closing the channel, or the user logging out)
// only detaches: the tower goes on watching.
type ClientWatcher struct {
	t       *Tower
	owner   common.Address
	onEvent func(Event)

	mu   sync.Mutex
	subs map[channel.ID]*clientSub
}

var _ watcher.Watcher = (*ClientWatcher)(nil)

// ForUser returns the watcher for owner's go-perun client. onEvent, if
// set, receives every event of the client's channels (the replay of the
// newest known one first); it must not block.
func (t *Tower) ForUser(owner common.Address, onEvent func(Event)) *ClientWatcher {
	return &ClientWatcher{t: t, owner: owner, onEvent: onEvent, subs: map[channel.ID]*clientSub{}}
}

// StartWatchingLedgerChannel attaches a ledger channel to the node's
// watch, starting the watch if needed.
func (c *ClientWatcher) StartWatchingLedgerChannel(_ context.Context, ss channel.SignedState) (watcher.StatesPub, watcher.AdjudicatorSub, error) {
	if err := c.t.Watch(c.owner, ss); err != nil {
		return nil, nil, err
	}
	id := ss.Params.ID()
	sub := &clientSub{events: make(chan channel.AdjudicatorEvent, clientBuffer)}
	c.mu.Lock()
	if _, dup := c.subs[id]; dup {
		c.mu.Unlock()
		return nil, nil, fmt.Errorf("channel %x: already watching for this channel", id)
	}
	c.subs[id] = sub
	c.mu.Unlock()
	detach, err := c.t.attach(id, func(ev Event) {
		if pe := c.t.perunEvent(ev); pe != nil {
			sub.deliver(pe)
		}
		if c.onEvent != nil {
			c.onEvent(ev)
		}
	})
	if err != nil {
		c.mu.Lock()
		delete(c.subs, id)
		c.mu.Unlock()
		return nil, nil, err
	}
	sub.setDetach(detach)
	return statesPub{t: c.t, id: id}, sub, nil
}

// StartWatchingSubChannel is not supported: perund opens ledger channels.
func (c *ClientWatcher) StartWatchingSubChannel(context.Context, channel.ID, channel.SignedState) (watcher.StatesPub, watcher.AdjudicatorSub, error) {
	return nil, nil, errors.New("watchtower: sub-channels are not supported")
}

// StopWatching detaches the client from a channel; the node's watch goes
// on until the channel is withdrawn (Tower.Forget).
func (c *ClientWatcher) StopWatching(_ context.Context, id channel.ID) error {
	c.mu.Lock()
	sub, ok := c.subs[id]
	delete(c.subs, id)
	c.mu.Unlock()
	if !ok {
		return nil
	}
	sub.close()
	return nil
}

// perunEvent converts ev for go-perun's client; nil for events the client
// has no use for (progression: perund channels have no app).
func (t *Tower) perunEvent(ev Event) channel.AdjudicatorEvent {
	base := channel.NewAdjudicatorEventBase(ev.ChannelID, ethchannel.NewBlockTimeout(t.o.Chain, ev.Timeout), ev.Version)
	switch ev.Phase {
	case PhaseRegistered:
		// The state is not decoded from the transaction's calldata: the
		// client does not use it, and a registration sent through a
		// contract wallet could not be decoded.
		return &channel.RegisteredEvent{AdjudicatorEventBase: *base}
	case PhaseConcluded:
		return &channel.ConcludedEvent{AdjudicatorEventBase: *base}
	}
	return nil
}

// clientBuffer is how many events a client may lag behind; when full the
// oldest is dropped (the client needs only the newest phase).
const clientBuffer = 8

// clientSub is the AdjudicatorSub of one channel of a client.
type clientSub struct {
	mu     sync.Mutex
	events chan channel.AdjudicatorEvent
	detach func()
	closed bool
}

func (s *clientSub) setDetach(d func()) {
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.detach = d
	}
	s.mu.Unlock()
	if closed {
		d()
	}
}

// deliver queues ev without blocking, dropping the oldest when full.
func (s *clientSub) deliver(ev channel.AdjudicatorEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for {
		select {
		case s.events <- ev:
			return
		default:
		}
		select {
		case <-s.events:
		default:
		}
	}
}

func (s *clientSub) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	d := s.detach
	close(s.events)
	s.mu.Unlock()
	if d != nil {
		d()
	}
}

// EventStream delivers the channel's events until the client stops
// watching.
func (s *clientSub) EventStream() <-chan channel.AdjudicatorEvent { return s.events }

// Err is nil: the stream ends only when the client stops watching.
func (s *clientSub) Err() error { return nil }

// statesPub publishes the client's states of one channel to the tower.
type statesPub struct {
	t  *Tower
	id channel.ID
}

// Publish records tx if it is newer and signed by every party.
func (p statesPub) Publish(_ context.Context, tx channel.Transaction) error {
	p.t.Publish(p.id, tx)
	return nil
}
