package watchtower

import (
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/perun-network/perun-eth-backend/bindings"
	"github.com/perun-network/perun-eth-backend/bindings/adjudicator"
	"github.com/perun-network/perun-eth-backend/subscription"
)

// defaultLookBack is how many blocks a (re)subscription reads into the
// past by default; the checks of every channel cover anything older.
const defaultLookBack = 100

// subscribeLoop keeps one subscription to every ChannelUpdate event of the
// adjudicator, subscribing again with a backoff when it breaks. After each
// subscription every watched channel is checked on chain, so that events
// missed meanwhile are found.
func (t *Tower) subscribeLoop() {
	bound := bind.NewBoundContract(t.o.Adjudicator, bindings.ABI.Adjudicator, t.o.Chain, t.o.Chain, t.o.Chain)
	eFact := func() *subscription.Event {
		return &subscription.Event{Name: bindings.Events.AdjChannelUpdate, Data: new(adjudicator.AdjudicatorChannelUpdate)}
	}
	backoff := 200 * time.Millisecond
	first := true
	for t.ctx.Err() == nil {
		sub, err := subscription.Subscribe(t.ctx, t.o.Chain, bound, eFact, t.o.LookBack, t.o.Finality)
		if err != nil {
			if t.ctx.Err() != nil {
				return
			}
			t.o.Log.Warn("watchtower: subscribe to adjudicator events; retrying", "in", backoff, "err", err)
			if !t.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
		t.mu.Lock()
		t.subbed = true
		if !first {
			// Channels watched before the first subscription are queued
			// already (Watch); after a gap every channel is checked.
			t.stats.Resubscribes++
			t.checkAllLocked()
		}
		t.wakeLocked()
		t.mu.Unlock()
		if !first {
			t.o.Log.Info("watchtower: subscribed again; checking every channel")
		}
		first = false
		err = t.read(sub)
		t.mu.Lock()
		t.subbed = false
		t.mu.Unlock()
		if t.ctx.Err() != nil {
			return
		}
		t.o.Log.Warn("watchtower: adjudicator subscription ended; subscribing again", "err", err)
		if !t.sleep(backoff) {
			return
		}
	}
}

// read dispatches the subscription's events until it ends, and returns
// once its reader has returned.
func (t *Tower) read(sub *subscription.ResistantEventSub) error {
	events := make(chan *subscription.Event, 128)
	done := make(chan error, 1)
	go func() { done <- sub.Read(t.ctx, events) }()
	for {
		select {
		case ev := <-events:
			t.dispatch(ev)
		case err := <-done:
			sub.Close()
			return err
		case <-t.ctx.Done():
			sub.Close()
			// The reader may be blocked on a send: drain until it returns.
			for {
				select {
				case <-events:
				case err := <-done:
					return err
				}
			}
		}
	}
}

// dispatch hands an event of a watched channel to the worker; events of
// other channels (other nodes' users) are dropped at once.
func (t *Tower) dispatch(ev *subscription.Event) {
	d, ok := ev.Data.(*adjudicator.AdjudicatorChannelUpdate)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, watched := t.watches[d.ChannelID]; !watched {
		return
	}
	t.enqueueLocked(work{id: d.ChannelID, u: &update{
		id: d.ChannelID, phase: Phase(d.Phase), version: d.Version, timeout: d.Timeout, txHash: ev.Log.TxHash,
	}})
}

// sleep waits d; false if the tower stops meanwhile.
func (t *Tower) sleep(d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-t.ctx.Done():
		return false
	}
}
