package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"perun.network/go-perun/channel"
	"perun.network/go-perun/channel/persistence"
	"perun.network/go-perun/client"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"

	"github.com/perund/perund/wireid"
)

// syncTimeout bounds one channel's sync exchange beyond the dial timeout.
const syncTimeout = 15 * time.Second

// loginSyncWait is how long opening a session waits for the syncs of its
// channels: a peer that answers at all answers well within it, and an
// unreachable one does not hold the user's login (go-perun's bus alone
// retries a failed dial for some 9 s). A channel whose peer did not
// answer in time is restored as stored and reported unsynced.
const loginSyncWait = 3 * time.Second

// syncPersisted brings every persisted open channel up to date with its
// peer before go-perun restores it. go-perun (at our version) does not sync
// on restore, and a node killed during an update comes back in one of these
// states:
//   - it proposed version v+1 and the peer signed and enabled it, but the
//     answer never reached the disk: the peer holds v+1 signed by both;
//   - it staged v+1 (Signing phase) that the peer never signed;
//   - it was asked to sign v+1 and died before enabling it.
//
// A ChannelSyncMsg is sent to the peer, whose go-perun answers with its
// current transaction and drops an update it was signing. A newer
// transaction from the peer, carrying valid signatures of both parties,
// replaces ours; an unfinished update of ours is discarded. The result is
// written to the database, which Restore then reads. Peers that cannot be
// reached in time (loginSyncWait) leave the channel as persisted (logged),
// marked unsynced until the channel's next update with the peer.
//
// Two sessions that start together (two users of this node after a
// restart) sync with each other before either has restored: each has
// registered its waiter before its listener accepted anything
// (prepareSync), so each one's message is the other's answer. A peer that
// is a user of this node without an open session is not dialled at all: it
// syncs with this session when it opens.
func (s *Session) syncPersisted(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, loginSyncWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, pch := range s.toSync {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.endSync(pch.ID())
			before := pch.CurrentTXV.Version
			plan := s.n.planSync(ctx, s.addr, pch.PeersV[1-pch.IdxV])
			if plan.skip {
				s.n.log.Info("channel sync left to the peer", "session", s.addr.Hex(), "channel", idHex(pch.ID()), "reason", plan.why)
				return
			}
			if err := s.syncChannel(ctx, pch, plan.peerFirst); err != nil {
				s.n.log.Warn("channel not synced with peer", "session", s.addr.Hex(), "channel", idHex(pch.ID()), "err", err)
				s.mu.Lock()
				s.unsynced[pch.ID()] = true
				s.mu.Unlock()
				return
			}
			s.n.log.Info("channel synced with peer", "session", s.addr.Hex(), "channel", idHex(pch.ID()), "version", pch.CurrentTXV.Version, "before", before)
		}()
	}
	wg.Wait()
	s.toSync = nil
}

// prepareSync reads the persisted channels that need a sync with their peer
// and registers a waiter for each peer's answer.
func (s *Session) prepareSync(ctx context.Context) []*persistence.Channel {
	it, err := s.pr.RestoreAll()
	if err != nil {
		s.n.log.Warn("read persisted channels for sync", "err", err)
		return nil
	}
	var chans []*persistence.Channel
	for it.Next(ctx) {
		pch := it.Channel()
		if pch.PhaseV != channel.Acting && pch.PhaseV != channel.Signing {
			continue
		}
		if len(pch.PeersV) != 2 || int(pch.IdxV) > 1 {
			s.n.log.Warn("channel not synced: not a two-party channel", "channel", idHex(pch.ID()))
			continue
		}
		chans = append(chans, pch)
	}
	if err := it.Close(); err != nil {
		s.n.log.Warn("read persisted channels for sync", "err", err)
	}
	s.mu.Lock()
	for _, pch := range chans {
		s.syncWait[pch.ID()] = syncWaiter{peer: pch.PeersV[1-pch.IdxV], reply: make(chan *client.ChannelSyncMsg, 1)}
	}
	s.mu.Unlock()
	return chans
}

func (s *Session) endSync(id channel.ID) {
	s.mu.Lock()
	delete(s.syncWait, id)
	s.mu.Unlock()
}

// syncChannel sends the channel's state to the peer and merges the peer's
// answer. With peerFirst set, the peer syncs at the same time and sends
// first: its message is awaited (until peerFirst closes) before sending.
func (s *Session) syncChannel(ctx context.Context, pch *persistence.Channel, peerFirst <-chan struct{}) error {
	id := pch.ID()
	s.mu.Lock()
	w, ok := s.syncWait[id]
	s.mu.Unlock()
	if !ok {
		return errors.New("no sync waiter registered")
	}
	ctx, cancel := context.WithTimeout(ctx, s.n.cfg.Comm.DialTimeout+syncTimeout)
	defer cancel()
	var msg *client.ChannelSyncMsg
	if peerFirst != nil {
		select {
		case msg = <-w.reply:
		case <-peerFirst:
		case <-ctx.Done():
			return fmt.Errorf("no sync message from the peer: %w", ctx.Err())
		}
	}
	err := s.bus.Publish(ctx, &wire.Envelope{
		Sender:    wireid.NewAddress(s.addr).Map(),
		Recipient: w.peer,
		Msg:       &client.ChannelSyncMsg{Phase: pch.PhaseV, CurrentTX: pch.CurrentTXV.Clone()},
	})
	if err != nil {
		return fmt.Errorf("send sync message: %w", err)
	}
	if msg == nil {
		select {
		case msg = <-w.reply:
		case <-ctx.Done():
			return fmt.Errorf("no sync answer from the peer: %w", ctx.Err())
		}
	}
	return s.mergeSync(ctx, pch, msg)
}

// mergeSync applies the peer's sync answer to the persisted channel.
func (s *Session) mergeSync(ctx context.Context, pch *persistence.Channel, msg *client.ChannelSyncMsg) error {
	v, mv := pch.CurrentTXV.Version, msg.CurrentTX.Version
	switch {
	case mv > v:
		if err := verifyAllSigs(pch.ParamsV, msg.CurrentTX); err != nil {
			return fmt.Errorf("peer's version %d: %w", mv, err)
		}
		pch.CurrentTXV = msg.CurrentTX.Clone()
		pch.StagingTXV = msg.CurrentTX.Clone()
		pch.PhaseV = channel.Acting
		if msg.CurrentTX.State.IsFinal {
			pch.PhaseV = channel.Final
		}
		if err := s.pr.Enabled(ctx, pch); err != nil {
			return fmt.Errorf("persist the peer's version %d: %w", mv, err)
		}
		return nil
	case mv == v:
		if err := msg.CurrentTX.State.Equal(pch.CurrentTXV.State); err != nil {
			return fmt.Errorf("peer has another state at version %d: %w", v, err)
		}
	default:
		s.n.log.Warn("peer is behind on a channel", "channel", idHex(pch.ID()), "ours", v, "theirs", mv)
	}
	if pch.PhaseV == channel.Signing { // the update in flight died with us
		pch.PhaseV = channel.Acting
		pch.StagingTXV = channel.Transaction{}
		if err := s.pr.PhaseChanged(ctx, pch); err != nil {
			return fmt.Errorf("persist discarded update: %w", err)
		}
	}
	return nil
}

// verifyAllSigs checks that tx carries a valid signature of every
// participant of params.
func verifyAllSigs(params *channel.Params, tx channel.Transaction) error {
	if tx.State == nil || tx.State.ID != params.ID() {
		return errors.New("state of another channel")
	}
	if len(tx.Sigs) != len(params.Parts) {
		return errors.New("signatures missing")
	}
	for i, part := range params.Parts {
		if tx.Sigs[i] == nil {
			return fmt.Errorf("signature %d missing", i)
		}
		for _, addr := range part {
			ok, err := channel.Verify(addr, tx.State, tx.Sigs[i])
			if err != nil || !ok {
				return fmt.Errorf("signature %d invalid", i)
			}
		}
	}
	return nil
}

// syncWaiter waits for one channel's sync answer from peer.
type syncWaiter struct {
	peer  map[wallet.BackendID]wire.Address
	reply chan *client.ChannelSyncMsg
}

// takeSyncReply hands a ChannelSyncMsg from the awaited peer to the waiting
// sync; it reports whether the message was taken. The peer's own sync
// request is such an answer too: it carries the peer's state.
func (s *Session) takeSyncReply(e *wire.Envelope) bool {
	m, ok := e.Msg.(*client.ChannelSyncMsg)
	if !ok {
		return false
	}
	s.mu.Lock()
	w, ok := s.syncWait[m.ID()]
	s.mu.Unlock()
	if !ok || wire.Keys(w.peer) != wire.Keys(e.Sender) {
		return false
	}
	select {
	case w.reply <- m:
	default:
	}
	return true
}
