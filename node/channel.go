package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	ethwallet "github.com/perun-network/perun-eth-backend/wallet"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/client"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/subscriptions"
	"github.com/perund/perund/watchtower"
)

// channelEntry is the session's view of one go-perun channel.
type channelEntry struct {
	s         *Session
	ch        *client.Channel
	id        channel.ID
	idx       channel.Index
	peer      common.Address
	challenge uint64
	symbol    string
	ops       chan struct{} // one local operation at a time
	// payQ are the payments waiting for the next update (coalesce.go).
	payQ []*queuedPay

	mu           sync.Mutex
	version      uint64
	final        bool // the current state is final (a close was agreed)
	bals         [2]*big.Int
	state        string
	closedBy     string
	openedAt     time.Time
	closedAt     *time.Time
	txHashes     []string
	settling     bool // a settle attempt is running
	settleLoop   bool // a background settle (with retries) is running
	watching     bool
	weRegistered bool
	// outcome is set once the channel is closed with an older state than
	// the latest (adopt).
	outcome *Outcome
	// unsynced: the peer did not answer the sync at login; cleared by the
	// next state both sign.
	unsynced bool
	// chainSeq counts the on-chain events of the channel: a settle that
	// waits for the chain wakes on it.
	chainSeq uint64
	col      collisions
	// changed is closed and replaced on every change of the version, the
	// state or the settling flags: waiters select on it instead of polling.
	changed chan struct{}
}

// settleRetry spaces the attempts of a background settle that failed.
var settleRetry = backoff{first: time.Second, limit: time.Minute}

func newChannelEntry(s *Session, ch *client.Channel) *channelEntry {
	st := ch.State()
	e := &channelEntry{
		s: s, ch: ch, id: ch.ID(), idx: ch.Idx(),
		challenge: ch.Params().ChallengeDuration,
		ops:       make(chan struct{}, 1),
		state:     StateOpening,
		openedAt:  time.Now().UTC(),
		col:       newCollisions(),
		changed:   make(chan struct{}),
	}
	parts := ch.Params().Parts
	if len(parts) == 2 {
		e.peer = ethwallet.AsEthAddr(parts[1-int(e.idx)][ethwallet.BackendID])
	}
	e.symbol = "?"
	if a := s.n.assetOf(st.Assets[0]); a != nil {
		e.symbol = a.symbol
	}
	e.setState(st)
	ch.OnUpdate(func(_, to *channel.State) { e.onUpdate(to) })
	return e
}

func (e *channelEntry) setState(st *channel.State) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.version = st.Version
	e.final = st.IsFinal
	e.bals[0] = new(big.Int).Set(st.Balances[0][0])
	e.bals[1] = new(big.Int).Set(st.Balances[0][1])
	e.notifyLocked()
}

// notifyLocked wakes everyone waiting for a change; e.mu must be held.
func (e *channelEntry) notifyLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// moveLocked sets the channel's API state; e.mu must be held.
func (e *channelEntry) moveLocked(state string) {
	if e.state != state {
		e.state = state
		e.notifyLocked()
	}
}

// waitFor waits until cond holds (evaluated with e.mu held), re-checking on
// every change of the entry. It gives up when ctx ends or, if timeout is
// positive, once timeout has passed; it reports whether cond held.
func (e *channelEntry) waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	for {
		e.mu.Lock()
		ok, changed := cond(), e.changed
		e.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-expired:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// onUpdate runs inside go-perun (machine locked) after each new state.
func (e *channelEntry) onUpdate(to *channel.State) {
	e.setState(to)
	e.mu.Lock()
	e.unsynced = false
	e.col.prune(to.Version)
	if to.IsFinal && e.state == StateOpen {
		e.moveLocked(StateClosing)
	}
	e.mu.Unlock()
	e.publish()
}

func (e *channelEntry) publish() {
	e.s.hub.Publish(subscriptions.Channels, e.info())
}

func (e *channelEntry) info() ChannelInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	ci := ChannelInfo{
		ChannelID:         idHex(e.id),
		Peer:              e.s.peerName(e.peer),
		Asset:             e.symbol,
		Balance:           Balance{Mine: amount(e.bals[e.idx]), Theirs: amount(e.bals[1-e.idx])},
		Version:           e.version,
		State:             e.state,
		ChallengeDuration: e.challenge,
		OpenedAt:          e.openedAt,
		ClosedAt:          e.closedAt,
		ClosedBy:          e.closedBy,
		TxHashes:          append([]string{}, e.txHashes...),
		Unsynced:          e.unsynced,
	}
	if e.outcome != nil {
		o := *e.outcome
		ci.Outcome = &o
	}
	return ci
}

func (e *channelEntry) getState() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state
}

func (e *channelEntry) mine() *big.Int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return new(big.Int).Set(e.bals[e.idx])
}

func (e *channelEntry) theirs() *big.Int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return new(big.Int).Set(e.bals[1-e.idx])
}

func (e *channelEntry) addTxs(h []string) {
	if len(h) == 0 {
		return
	}
	e.mu.Lock()
	e.txHashes = append(e.txHashes, h...)
	hashes := append([]string(nil), e.txHashes...)
	opened := e.openedAt
	e.mu.Unlock()
	e.s.mu.Lock()
	e.s.meta.Channels[idHex(e.id)] = &channelMeta{OpenedAt: opened, TxHashes: hashes}
	e.s.mu.Unlock()
	e.s.saveMeta()
}

// markOpen is called once the channel is funded (or restored open).
func (e *channelEntry) markOpen() {
	e.mu.Lock()
	e.moveLocked(StateOpen)
	opened := e.openedAt
	hashes := append([]string(nil), e.txHashes...)
	e.mu.Unlock()
	e.s.mu.Lock()
	e.s.meta.Channels[idHex(e.id)] = &channelMeta{OpenedAt: opened, TxHashes: hashes}
	e.s.mu.Unlock()
	e.s.saveMeta()
	e.startWatching()
	e.publish()
}

// afterRestore sets the state of a channel restored from the database.
func (e *channelEntry) afterRestore() {
	phase := e.ch.Phase()
	if phase == channel.Withdrawing && e.ch.State().IsFinal {
		// The settle of an agreed final state was interrupted: it resumes
		// as the agreement it is, not as a dispute.
		phase = channel.Final
	}
	switch phase {
	case channel.Acting, channel.Signing:
		e.markOpen()
		e.checkOnChain()
	case channel.Final:
		e.mu.Lock()
		e.moveLocked(StateClosing)
		e.mu.Unlock()
		e.startWatching()
		e.settleInBackground(true, "agreement")
	case channel.Registering, channel.Registered, channel.Progressing, channel.Progressed, channel.Withdrawing:
		e.mu.Lock()
		e.moveLocked(StateRegistered)
		e.mu.Unlock()
		e.startWatching()
		e.settleInBackground(false, "dispute")
	default:
		// Opening was interrupted: the channel never became usable; a
		// deposit the user made into it is returned.
		e.startWatching()
		e.refundIfHeld()
	}
}

// checkOnChain reads the adjudicator's entry of a channel restored open
// (at login, at node start): a dispute that the chain decided while the
// user was away (another version concluded, or standing past its challenge
// period), or the latest state registered, is settled now. A stale
// registration that can still be refuted is the watchtower's.
func (e *channelEntry) checkOnChain() {
	e.s.tasks.goTask("check "+shortID(e.id), func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		d, now, err := e.s.n.readDispute(ctx, e.id)
		if err != nil {
			e.s.n.log.Warn("check the channel on chain", "channel", idHex(e.id), "err", err)
			return
		}
		local := e.ch.State().Version
		if v := judge(d, local, now); v != verdictSettle || (d.Registered && d.Version == local) {
			e.s.n.log.Info("channel disputed on chain while the user was away", "channel", idHex(e.id),
				"phase", d.Phase.String(), "onChainVersion", d.Version, "latestVersion", local, "next", v.String())
			e.mu.Lock()
			if e.state == StateOpen {
				e.moveLocked(StateRegistered)
			}
			e.mu.Unlock()
			e.publish()
			e.settleInBackground(false, "dispute")
		}
	})
}

// startWatching attaches the channel to the node's watchtower through
// go-perun's Watch: the client publishes its states to the tower and
// follows the on-chain phase; the tower refutes a stale registration and
// reports each event to the session (onTowerEvent), which tells the user
// and settles. The tower's events reach the session directly, not through
// go-perun's handler: go-perun delivers those only after taking the
// channel lock, which its own Settle holds for the whole challenge period.
func (e *channelEntry) startWatching() {
	e.mu.Lock()
	if e.watching || e.ch.IsClosed() {
		e.mu.Unlock()
		return
	}
	e.watching = true
	e.mu.Unlock()
	// Watch takes no context: it returns when the channel or the client
	// closes, which the session's shutdown does before waiting for its tasks.
	e.s.tasks.goTask("watch "+shortID(e.id), func(context.Context) {
		// go-perun's Watch dereferences nil when the channel closes between
		// its own closed-check and the registration with the watcher (a
		// shutdown racing the start); nothing is left to watch then.
		defer func() {
			if r := recover(); r != nil && !e.ch.IsClosed() {
				e.s.n.log.Error("channel watcher failed", "channel", idHex(e.id), "panic", r)
			}
		}()
		if e.ch.IsClosed() {
			return
		}
		if err := e.ch.Watch(ignoreEvents{}); err != nil && !e.ch.IsClosed() {
			e.s.n.log.Warn("channel watcher stopped", "channel", idHex(e.id), "err", err)
		}
	})
}

// ignoreEvents is the go-perun watch handler: the tower reports events to
// the session directly (onTowerEvent).
type ignoreEvents struct{}

func (ignoreEvents) HandleAdjudicatorEvent(channel.AdjudicatorEvent) {}

// handleEvent reports an on-chain event and settles when the channel is
// concluded or registered: the user's funds are withdrawn without asking.
func (e *channelEntry) handleEvent(ev watchtower.Event) {
	e.mu.Lock()
	weRegistered := e.weRegistered
	e.mu.Unlock()
	de := e.s.n.disputeEvent(ev, e.s.addr, weRegistered)
	e.mu.Lock()
	e.chainSeq++
	e.notifyLocked()
	e.mu.Unlock()
	settle, secondary, by := false, false, "dispute"
	switch ev.Phase {
	case watchtower.PhaseRegistered:
		e.mu.Lock()
		if e.state != StateClosed {
			e.moveLocked(StateRegistered)
		}
		e.mu.Unlock()
		e.publish()
		// A stale registration that the watchtower refutes is settled
		// once the refutation is mined (its own event): settling now would
		// register the latest state a second time, from the user's account.
		// If the refutation failed, the session's settle registers it.
		settle = ev.Version >= ev.Latest || ev.RefuteErr != ""
	case watchtower.PhaseProgressed:
	case watchtower.PhaseConcluded:
		settle, secondary = true, true
		e.mu.Lock()
		if ev.Version == e.version {
			de.Balance = &Balance{Mine: amount(e.bals[e.idx]), Theirs: amount(e.bals[1-e.idx])}
		}
		e.mu.Unlock()
		if ev.Final || e.info().State == StateClosing {
			by = "agreement"
		}
	default:
		return
	}
	// A cooperative close is no dispute: the channels topic tells it.
	if !ev.Final {
		e.s.hub.Publish(subscriptions.Disputes, de)
	}
	if settle {
		e.settleInBackground(secondary, by)
	}
}

// settle concludes (if needed) and withdraws the user's share, then closes
// the channel: one attempt, bounded by ctx and the settle timeout. It runs
// at most once at a time per channel; while another attempt runs, or once
// the channel is closed, it returns nil at once. The chain is read before
// and after go-perun's settle: when it concluded another version, or
// another version stands past its challenge period, go-perun's settle
// (which would only revert) is not tried and the chain's outcome is
// adopted or awaited (reconcile).
func (e *channelEntry) settle(ctx context.Context, secondary bool, by string) error {
	e.mu.Lock()
	if e.settling || e.state == StateClosed {
		e.mu.Unlock()
		return nil
	}
	e.settling = true
	// Told only when it moves: a channel whose final state was signed is
	// closing already (onUpdate told it), and a retry changes nothing.
	moved := e.state != StateRegistered && e.state != StateClosing
	if moved {
		e.state = StateClosing
	}
	e.notifyLocked()
	e.mu.Unlock()
	if moved {
		e.publish()
	}
	fail := func(err error) error {
		e.mu.Lock()
		e.settling = false
		e.notifyLocked()
		e.mu.Unlock()
		return err
	}
	cfg := e.s.n.cfg
	timeout := 3*cfg.Chain.TxTimeout + time.Duration(e.challenge)*time.Second + 30*time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if handled, err := e.reconcile(ctx); handled {
		if err != nil {
			return fail(err)
		}
		return nil // adopted: closed
	} else if err != nil {
		e.s.n.log.Warn("read the channel on chain before settling", "channel", idHex(e.id), "err", err)
	}
	ctx, rec := withRecorder(ctx)
	err := e.ch.Settle(ctx, secondary)
	e.addTxs(rec.all())
	if err != nil {
		chain.ResetNonce(e.s.n.chainID, e.s.addr)
		if errors.Is(context.Cause(ctx), errStopping) {
			e.s.n.log.Debug("settle interrupted by shutdown; it resumes at the next session open", "channel", idHex(e.id), "err", err)
			return fail(chainErr(fmt.Errorf("settle channel %s: %w", idHex(e.id), err), rec))
		}
		e.s.n.log.Error("settle channel", "channel", idHex(e.id), "err", err)
		// The chain may have moved meanwhile (the peer concluded an older
		// state): then its outcome decides, not a retry.
		if handled, rerr := e.reconcile(ctx); handled {
			if rerr != nil {
				return fail(rerr)
			}
			return nil
		}
		return fail(chainErr(fmt.Errorf("settle channel %s: %w", idHex(e.id), err), rec))
	}
	if by == "dispute" {
		e.tellWithdrawn(rec.last())
	}
	e.finishClosed(by)
	return nil
}

// tellWithdrawn reports the user's share withdrawn after a dispute that
// the latest state won.
func (e *channelEntry) tellWithdrawn(txHash string) {
	e.mu.Lock()
	mine, theirs, v := amount(e.bals[e.idx]), amount(e.bals[1-e.idx]), e.version
	e.mu.Unlock()
	e.tellDispute(DisputeEvent{
		ChannelID: idHex(e.id), Event: DisputeWithdrawn, Version: v, TxHash: txHash,
		Amount: mine, Balance: &Balance{Mine: mine, Theirs: theirs},
		Response: fmt.Sprintf("your share of version %d is withdrawn", v),
	})
}

// finishClosed records the channel closed (by "agreement" or "dispute")
// once it is concluded and the user's share withdrawn: the tower forgets
// it, the session moves it to its closed channels and tells the user.
func (e *channelEntry) finishClosed(by string) {
	now := time.Now().UTC()
	e.mu.Lock()
	e.state = StateClosed
	e.closedAt = &now
	e.closedBy = by
	e.mu.Unlock()
	// Concluded and withdrawn: nothing is left to refute.
	e.s.n.tower.Forget(e.id, e.s.addr)
	if err := e.ch.Close(); err != nil && !errors.Is(err, context.Canceled) {
		e.s.n.log.Debug("close channel object", "channel", idHex(e.id), "err", err)
	}
	ci := e.info()
	s := e.s
	s.mu.Lock()
	delete(s.meta.Channels, ci.ChannelID)
	s.meta.Closed = append(s.meta.Closed, ci)
	delete(s.channels, e.id)
	s.mu.Unlock()
	s.saveMeta()
	e.mu.Lock()
	e.settling = false
	e.notifyLocked() // waiters see the channel closed once it is on record
	e.mu.Unlock()
	s.hub.Publish(subscriptions.Channels, ci)
	s.n.log.Info("channel closed", "channel", ci.ChannelID, "by", by, "version", ci.Version)
}

// settleNow runs one settle attempt as a session task and waits for its
// result until ctx ends; the attempt goes on after that.
func (e *channelEntry) settleNow(ctx context.Context, by string) error {
	res := make(chan error, 1)
	if !e.s.tasks.goTask("settle "+shortID(e.id), func(tctx context.Context) { res <- e.settle(tctx, false, by) }) {
		return &StateError{State: e.getState(), Msg: "the session is closing"}
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return &TimeoutError{What: "waiting for the channel to settle", Timeout: 0}
	}
}

// settleInBackground starts a session task that settles the channel and,
// while that fails, tries again after an exponential backoff (settleRetry),
// until the channel is closed or the session stops. It does nothing while
// such a task runs already. Retries conclude themselves (secondary false):
// a secondary settle that failed waits for nobody (goperun-notes §7.5).
func (e *channelEntry) settleInBackground(secondary bool, by string) {
	e.mu.Lock()
	if e.settleLoop || e.state == StateClosed {
		e.mu.Unlock()
		return
	}
	e.settleLoop = true
	e.mu.Unlock()
	started := e.s.tasks.goTask("settle-retry "+shortID(e.id), func(ctx context.Context) {
		defer func() {
			e.mu.Lock()
			e.settleLoop = false
			e.notifyLocked()
			e.mu.Unlock()
		}()
		for failures := 0; ctx.Err() == nil; {
			// Another attempt (a user's close) may be running: wait for it.
			if !e.waitFor(ctx, 0, func() bool { return !e.settling || e.state == StateClosed }) {
				return
			}
			if e.getState() == StateClosed {
				return
			}
			e.mu.Lock()
			seq := e.chainSeq
			e.mu.Unlock()
			err := e.settle(ctx, secondary, by)
			if err == nil {
				continue // closed, or another attempt got in first: checked above
			}
			if ctx.Err() != nil {
				return
			}
			secondary = false
			chainMoved := func() bool { return e.state == StateClosed || e.chainSeq != seq }
			var await *awaitError
			switch {
			case errors.As(err, &await):
				// Nothing to send: wait for the conclusion (an event of the
				// tower), reading the chain again now and then (a call, no
				// transaction).
				e.s.n.log.Info("settle waits for the chain", "channel", idHex(e.id), "why", err)
				e.waitFor(ctx, max(await.retry, time.Second), chainMoved)
			case isRevert(err):
				// A reverted transaction is not sent again unchanged: the
				// next attempt waits until the chain moves (or the next
				// login or start).
				e.s.n.log.Error("settle reverted; not retrying until the channel moves on chain", "channel", idHex(e.id), "err", err)
				e.waitFor(ctx, 0, chainMoved)
			default:
				d := settleRetry.delay(failures)
				failures++
				e.s.n.log.Warn("settle failed; retrying", "channel", idHex(e.id), "attempt", failures, "in", d)
				e.waitFor(ctx, d, func() bool { return e.state == StateClosed })
			}
		}
	})
	if !started {
		e.mu.Lock()
		e.settleLoop = false
		e.mu.Unlock()
	}
}

// isRevert tells whether err is a transaction that the chain reverted (or
// would revert: a failed gas estimation), which sending again unchanged
// cannot mend.
func isRevert(err error) bool {
	return errors.Is(err, ethchannel.ErrTxFailed) || strings.Contains(err.Error(), "execution reverted")
}

// acquire takes the channel's operation slot.
func (e *channelEntry) acquire(ctx context.Context) error {
	select {
	case e.ops <- struct{}{}:
		return nil
	case <-ctx.Done():
		return &ConflictError{Msg: "channel busy: another operation is in progress"}
	}
}

func (e *channelEntry) release() { <-e.ops }

// Send pays amount to the peer.
func (s *Session) Send(ctx context.Context, id string, amt *big.Int) (ChannelInfo, error) {
	start := time.Now()
	ci, err := s.send(ctx, id, amt)
	asset := ci.Asset
	if err != nil {
		if ch, gerr := s.Channel(id); gerr == nil {
			asset = ch.Asset
		}
	}
	s.n.metrics.Payment(asset, errorKind(err), time.Since(start))
	return ci, err
}

// send pays amt, coalesced with other payments of the channel that wait
// at the same time (coalesce.go).
func (s *Session) send(ctx context.Context, id string, amt *big.Int) (ChannelInfo, error) {
	if err := positiveAmount(amt); err != nil {
		return ChannelInfo{}, err
	}
	e, err := s.liveEntry(id)
	if err != nil {
		return ChannelInfo{}, err
	}
	return e.pay(ctx, amt)
}

// positiveAmount refuses an amount of a payment or request that is not
// positive.
func positiveAmount(amt *big.Int) error {
	if amt == nil || amt.Sign() <= 0 {
		return &InvalidArgError{Field: "amount", Msg: "must be a positive integer"}
	}
	return nil
}

// Request asks the peer to pay amt: an update that moves amt from the
// peer's balance to the user's, which the peer must accept. Requests are
// never coalesced.
func (s *Session) Request(ctx context.Context, id string, amt *big.Int) (ChannelInfo, error) {
	if err := positiveAmount(amt); err != nil {
		return ChannelInfo{}, err
	}
	e, err := s.acquireEntry(ctx, id)
	if err != nil {
		return ChannelInfo{}, err
	}
	defer e.release()
	if st := e.getState(); st != StateOpen {
		return ChannelInfo{}, &StateError{State: st, Msg: "channel is not open"}
	}
	from, to := 1-e.idx, e.idx
	// Checked before go-perun's update starts: failing inside it cancels
	// the update while go-perun may be sending, which drops the peer
	// connection (the next message pays a new dial and handshake).
	if bal := e.theirs(); bal.Cmp(amt) < 0 {
		return ChannelInfo{}, insufficientInChannel(false, bal, amt)
	}
	err = e.update(ctx, func(st *channel.State) error {
		bal := st.Balances[0][from]
		if bal.Cmp(amt) < 0 {
			return insufficientInChannel(false, bal, amt)
		}
		st.Balances[0][from] = new(big.Int).Sub(bal, amt)
		st.Balances[0][to] = new(big.Int).Add(st.Balances[0][to], amt)
		return nil
	})
	if err != nil {
		return ChannelInfo{}, err
	}
	return e.info(), nil
}

func insufficientInChannel(pay bool, have, amt *big.Int) error {
	where := "in the channel"
	if !pay {
		where = "in the channel (peer's balance)"
	}
	return &InsufficientFundsError{Where: where, Available: have.String(), Needed: amt.String()}
}

// Close settles the channel cooperatively: a final state signed by both,
// then conclude and withdraw. When the peer does not agree in time, it falls
// back to the dispute path. A channel closed already answers with how it
// closed.
func (s *Session) Close(ctx context.Context, id string) (ChannelInfo, error) {
	return s.closeWith(ctx, id, s.closeAgreed)
}

// ForceClose registers the latest state on-chain without asking the peer,
// waits out the challenge period, concludes and withdraws. A channel closed
// already answers with how it closed.
func (s *Session) ForceClose(ctx context.Context, id string) (ChannelInfo, error) {
	return s.closeWith(ctx, id, s.forceClose)
}

// closeWith runs a close of channel id (closeAgreed, forceClose) with the
// channel's operation slot held. Closing a closed channel answers with how
// it closed.
func (s *Session) closeWith(ctx context.Context, id string, op func(context.Context, *channelEntry) (ChannelInfo, error)) (ChannelInfo, error) {
	e, err := s.acquireEntry(ctx, id)
	if err != nil {
		if ci, cerr := s.Channel(id); cerr == nil && ci.State == StateClosed {
			return ci, nil
		}
		return ChannelInfo{}, err
	}
	defer e.release()
	return op(ctx, e)
}

// closeAgreed is Close once the operation slot is held.
func (s *Session) closeAgreed(ctx context.Context, e *channelEntry) (ChannelInfo, error) {
	switch st := e.getState(); st {
	case StateOpen:
	case StateClosing, StateRegistered:
		return s.waitClosed(ctx, e)
	default:
		return ChannelInfo{}, &StateError{State: st, Msg: "channel cannot be closed now"}
	}
	uerr := e.update(ctx, func(st *channel.State) error {
		st.IsFinal = true
		return nil
	})
	by := "agreement"
	if uerr != nil {
		s.n.log.Info("cooperative close failed, disputing", "channel", idHex(e.id), "err", uerr)
		by = "dispute"
		e.mu.Lock()
		e.weRegistered = true
		e.mu.Unlock()
	}
	if err := e.settleNow(ctx, by); err != nil && !isAwait(err) {
		return ChannelInfo{}, err
	}
	return s.waitClosed(ctx, e)
}

// forceClose is ForceClose once the operation slot is held.
func (s *Session) forceClose(ctx context.Context, e *channelEntry) (ChannelInfo, error) {
	switch st := e.getState(); st {
	case StateOpen, StateClosing, StateRegistered:
	default:
		return ChannelInfo{}, &StateError{State: st, Msg: "channel cannot be force-closed now"}
	}
	e.mu.Lock()
	e.weRegistered = true
	e.mu.Unlock()
	if err := e.settleNow(ctx, "dispute"); err != nil && !isAwait(err) {
		return ChannelInfo{}, err
	}
	return s.waitClosed(ctx, e)
}

// waitClosed waits until e is closed, making sure that a settle (with
// retries) is running meanwhile.
func (s *Session) waitClosed(ctx context.Context, e *channelEntry) (ChannelInfo, error) {
	e.mu.Lock()
	by := "dispute"
	if e.final {
		by = "agreement"
	}
	e.mu.Unlock()
	e.settleInBackground(false, by)
	if !e.waitFor(ctx, 0, func() bool { return e.state == StateClosed }) {
		return e.info(), &TimeoutError{What: "waiting for the channel to close", Timeout: 0}
	}
	return e.info(), nil
}

// acquireEntry finds a live channel and takes its operation slot; the
// caller releases it. A channel that is already closed is a StateError,
// also one that closed while the caller waited for the slot.
func (s *Session) acquireEntry(ctx context.Context, id string) (*channelEntry, error) {
	e, err := s.liveEntry(id)
	if err != nil {
		return nil, err
	}
	if err := e.acquire(ctx); err != nil {
		return nil, err
	}
	if e.getState() == StateClosed {
		e.release()
		return nil, alreadyClosed()
	}
	return e, nil
}

// alreadyClosed is an operation's answer for a closed channel.
func alreadyClosed() error { return &StateError{State: StateClosed, Msg: "channel is already closed"} }

// liveEntry is the entry of a channel that is not closed. A channel that
// finishClosed has marked closed but not yet moved to the session's
// closed channels is closed too.
func (s *Session) liveEntry(id string) (*channelEntry, error) {
	e, err := s.entry(id)
	if err != nil {
		if _, cerr := s.Channel(id); cerr == nil {
			return nil, alreadyClosed()
		}
		return nil, err
	}
	if e.getState() == StateClosed {
		return nil, alreadyClosed()
	}
	return e, nil
}

// update runs one go-perun update of the channel, retrying after a
// collision with an update of the peer. The caller holds the op slot.
func (e *channelEntry) update(ctx context.Context, fn func(*channel.State) error) error {
	timeout := e.s.n.cfg.Channel.ResponseTimeout + 5*time.Second
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		e.yieldToPeer(ctx)
		uctx, cancel := context.WithTimeoutCause(ctx, timeout, errUpdateTimeout)
		uctx, cancelCause := context.WithCancelCause(uctx)
		var fnErr error
		e.mu.Lock()
		tok := e.col.begin(cancelCause)
		e.mu.Unlock()
		err := e.ch.Update(uctx, func(st *channel.State) {
			if fnErr = fn(st); fnErr != nil {
				cancelCause(fnErr)
				return
			}
			e.mu.Lock()
			e.col.proposing(tok, st.Version+1, e.idx)
			e.mu.Unlock()
		})
		e.mu.Lock()
		e.col.end(tok)
		e.mu.Unlock()
		cause := context.Cause(uctx)
		cancel()
		cancelCause(nil)
		if fnErr != nil {
			return fnErr
		}
		if err == nil {
			return nil
		}
		if errors.Is(cause, errCollision) {
			e.s.n.log.Debug("update collision, retrying", "channel", idHex(e.id), "attempt", attempt)
			e.waitVersionAbove(ctx, tok.version)
			lastErr = err
			continue
		}
		return e.mapUpdateErr(err, timeout)
	}
	return &ConflictError{Msg: fmt.Sprintf("channel busy: the peer kept updating (%v)", lastErr)}
}

// yieldToPeer lets the peer's retried update go first after this side won
// a collision (index 0 only): it waits until the version moves or the
// yield window ends.
func (e *channelEntry) yieldToPeer(ctx context.Context) {
	e.mu.Lock()
	until := e.col.yieldUntil
	e.col.yieldUntil = time.Time{}
	start := e.version
	e.mu.Unlock()
	if wait := time.Until(until); wait > 0 {
		e.waitFor(ctx, wait, func() bool { return e.version > start })
	}
}

// waitVersionAbove waits briefly (collisionWait) until the channel has moved
// past v-1, i.e. the peer's colliding update went through.
func (e *channelEntry) waitVersionAbove(ctx context.Context, v uint64) {
	if v == 0 {
		return
	}
	e.waitFor(ctx, collisionWait, func() bool { return e.version+1 > v })
}

func (e *channelEntry) mapUpdateErr(err error, timeout time.Duration) error {
	peer := e.s.peerName(e.peer)
	switch classify(err) {
	case failPeerRejected:
		return &PeerRejectedError{Peer: peer, Reason: rejectReason(err)}
	case failPeerNoAnswer, failDeadline:
		return &TimeoutError{What: "waiting for the peer's answer", Timeout: timeout}
	case failPeerUnreachable:
		c, _ := e.s.contacts.ByAddress(e.peer)
		return &PeerUnreachableError{Peer: peer, CommAddress: c.CommAddress, Err: err}
	}
	return fmt.Errorf("update channel %s: %w", idHex(e.id), err)
}

func chainErr(err error, rec *txRecorder) error {
	return &ChainError{TxHash: rec.last(), Err: err}
}

func idHex(id channel.ID) string { return "0x" + hex.EncodeToString(id[:]) }

// shortID names a channel in task names.
func shortID(id channel.ID) string { return "0x" + hex.EncodeToString(id[:4]) }

func parseID(s string) ([32]byte, error) {
	var id [32]byte
	if len(s) != 66 || !strings.HasPrefix(s, "0x") {
		return id, fmt.Errorf("%q is not 0x followed by 64 hex digits", s)
	}
	b, err := hex.DecodeString(s[2:])
	if err != nil {
		return id, fmt.Errorf("%q is not 0x followed by 64 hex digits", s)
	}
	copy(id[:], b)
	return id, nil
}
