// Package watchtower is perund's node-level watcher. One Tower per node
// watches every open channel of every user of the node, whether the user
// is logged in or not, through one subscription to the adjudicator's
// events that it dispatches by channel id. It holds the latest state of
// each channel that both parties signed and, when a party registers an
// older one, refutes it by registering the latest: a refutation needs no
// participant's key, so an operator account of the node sends it.
//
// A channel that starts being watched is checked on chain at once (the
// adjudicator's disputes entry, one call), so a registration older than
// any event look-back is seen too; every (re)subscription checks all
// channels again, so nothing is missed while the chain was unreachable.
//
// Sessions attach to the tower through a ClientWatcher, the
// watcher.Watcher given to their go-perun client: it publishes the
// client's states to the tower and relays the tower's events to the
// client, but never stops the node's watch.
package watchtower

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/perun-network/perun-eth-backend/bindings/adjudicator"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	"perun.network/go-perun/channel"
)

// Phase is a channel's phase on the adjudicator.
type Phase uint8

// The adjudicator's phases (Adjudicator.sol's DisputePhase).
const (
	PhaseRegistered Phase = 0 // a state is registered, the challenge period runs
	PhaseProgressed Phase = 1 // an app state was progressed (force execution)
	PhaseConcluded  Phase = 2 // concluded: funds can be withdrawn
)

func (p Phase) String() string {
	switch p {
	case PhaseRegistered:
		return "registered"
	case PhaseProgressed:
		return "progressed"
	case PhaseConcluded:
		return "concluded"
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// Event is what the tower learnt of a channel on chain, with what it does
// about it.
type Event struct {
	ChannelID channel.ID
	Phase     Phase
	// Version is the version on chain.
	Version uint64
	// Timeout is when the challenge period ends (unix seconds); 0 if the
	// chain did not say.
	Timeout uint64
	// TxHash is the transaction that caused the event; zero if the event
	// comes from reading the adjudicator's state (at start, after a gap).
	TxHash common.Hash
	// By is the sender of TxHash; zero if unknown.
	By common.Address
	// Latest is the newest version signed by both parties that the tower
	// holds.
	Latest uint64
	// Refuting tells that the tower registers Latest because Version is
	// older.
	Refuting bool
	// Refuted tells that this registration is the tower's refutation,
	// mined.
	Refuted bool
	// RefuteErr, if set, is why the refutation of this stale registration
	// failed (the event is repeated with it).
	RefuteErr string
	// Final tells that the concluded version is the latest state and that
	// state is final: a cooperative close, not a dispute.
	Final bool
	// Owners are the users of the node who are parties of the channel.
	Owners []common.Address
}

// RefuteFunc sends the registration of req (the latest state, signed by
// both parties) for a channel of owners. The node decides who sends it.
type RefuteFunc func(ctx context.Context, owners []common.Address, req channel.AdjudicatorReq) error

// Options configure a Tower.
type Options struct {
	// Chain is read for events, the adjudicator's state and block times.
	Chain ethchannel.ContractInterface
	// ChainID signs nothing; it recovers the senders of transactions.
	ChainID *big.Int
	// Adjudicator is the adjudicator contract.
	Adjudicator common.Address
	// Refute sends refutations.
	Refute RefuteFunc
	// OnEvent, if set, is called for every new event, in order, from the
	// tower's worker, before the event reaches attached sessions. It must
	// not block for long.
	OnEvent func(Event)
	// Log receives the tower's log lines.
	Log *slog.Logger
	// RefuteTimeout bounds one refutation (send and confirm); default 2 min.
	RefuteTimeout time.Duration
	// Finality is the number of blocks an event must be deep; default 1.
	Finality uint64
	// LookBack is how many blocks a (re)subscription reads into the past;
	// default 100. The on-chain check of each channel covers anything
	// older.
	LookBack uint64
}

// Tower watches the channels of a node. Its methods are safe for
// concurrent use.
type Tower struct {
	o      Options
	caller *adjudicator.AdjudicatorCaller
	signer types.Signer

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	watches map[channel.ID]*watch
	// queue holds work for the worker: channel checks and chain updates.
	queue []work
	// retries are the checks to queue again at the given time (after a
	// failed read or refutation).
	retries  map[channel.ID]time.Time
	wake     chan struct{}
	started  bool
	closed   bool
	subbed   bool
	refuting int // refutations running
	stats    Stats
}

// Stats are the tower's counters.
type Stats struct {
	Watched      int
	Subscribed   bool
	Events       uint64
	Checks       uint64
	Refutations  uint64
	RefuteErrors uint64
	Resubscribes uint64
}

// watch is the tower's record of one channel.
type watch struct {
	params *channel.Params
	latest channel.Transaction // signed by every party
	owners map[common.Address]struct{}
	// last is the newest on-chain state the tower saw.
	last    *update
	sinks   map[*sink]struct{}
	refutes uint64 // version a running refutation registers; 0 if none
	// refuted is the version the tower's last refutation registered.
	refuted uint64
	// failures counts failed refutations in a row.
	failures int
}

// update is one on-chain state of a channel: from an event or a check.
type update struct {
	id      channel.ID
	phase   Phase
	version uint64
	timeout uint64
	txHash  common.Hash
}

// after tells whether u is newer than o (nil: nothing known). On chain a
// channel's version only grows and, within a version, its phase only moves
// forward (registered, progressed, concluded): anything else is a replay
// of the past (a subscription reading back, a check overtaken by events).
func (u *update) after(o *update) bool {
	if o == nil {
		return true
	}
	if u.version != o.version {
		return u.version > o.version
	}
	return u.phase > o.phase
}

// work is one item of the worker's queue: a check of a channel (u nil) or
// an on-chain update.
type work struct {
	id channel.ID
	u  *update
}

// sink receives a channel's events for one attached session.
type sink struct {
	fn func(Event)
}

// New returns a tower; Start starts it.
func New(o Options) (*Tower, error) {
	if o.Chain == nil || o.Refute == nil || o.ChainID == nil {
		return nil, errors.New("watchtower: chain, chain id and refute are required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.RefuteTimeout <= 0 {
		o.RefuteTimeout = 2 * time.Minute
	}
	if o.Finality == 0 {
		o.Finality = 1
	}
	if o.LookBack == 0 {
		o.LookBack = defaultLookBack
	}
	caller, err := adjudicator.NewAdjudicatorCaller(o.Adjudicator, o.Chain)
	if err != nil {
		return nil, fmt.Errorf("watchtower: bind adjudicator: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Tower{
		o: o, caller: caller, signer: types.LatestSignerForChainID(o.ChainID),
		ctx: ctx, cancel: cancel,
		watches: map[channel.ID]*watch{},
		retries: map[channel.ID]time.Time{},
		wake:    make(chan struct{}, 1),
	}, nil
}

// Start starts the tower's chain subscription and worker. Channels may be
// watched before: they are checked once the subscription is up.
func (t *Tower) Start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started || t.closed {
		return
	}
	t.started = true
	t.wg.Add(2)
	go func() { defer t.wg.Done(); t.subscribeLoop() }()
	go func() { defer t.wg.Done(); t.work() }()
}

// Close stops the tower and waits for its goroutines (a refutation in
// flight is cancelled) until ctx ends.
func (t *Tower) Close(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close watchtower: %w", ctx.Err())
	}
}

// Stats returns the tower's counters.
func (t *Tower) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Watched = len(t.watches)
	s.Subscribed = t.subbed
	return s
}

// fullySigned tells whether every party signed tx.
func fullySigned(p *channel.Params, tx channel.Transaction) bool {
	if tx.State == nil || len(tx.Sigs) != len(p.Parts) {
		return false
	}
	for _, s := range tx.Sigs {
		if s == nil {
			return false
		}
	}
	return true
}

// Watch starts watching a channel of owner with its latest state signed
// by every party, or adds owner and a newer state to a watched channel. A
// channel new to the tower is checked on chain.
func (t *Tower) Watch(owner common.Address, ss channel.SignedState) error {
	if ss.Params == nil || ss.State == nil {
		return errors.New("watch: params and state are required")
	}
	tx := channel.Transaction{State: ss.State, Sigs: ss.Sigs}
	if !fullySigned(ss.Params, tx) {
		return fmt.Errorf("watch channel %x: the state is not signed by every party", ss.Params.ID())
	}
	id := ss.Params.ID()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("watch: the watchtower is closed")
	}
	w, ok := t.watches[id]
	if !ok {
		w = &watch{params: ss.Params.Clone(), owners: map[common.Address]struct{}{}, sinks: map[*sink]struct{}{}}
		t.watches[id] = w
		t.enqueueLocked(work{id: id})
	}
	w.owners[owner] = struct{}{}
	if w.latest.State == nil || ss.State.Version > w.latest.State.Version {
		w.latest = tx.Clone()
	}
	return nil
}

// Publish records a newer state of a watched channel, signed by every
// party; other states are ignored. It is fast: go-perun calls it inside
// every update.
func (t *Tower) Publish(id channel.ID, tx channel.Transaction) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.watches[id]
	if !ok || tx.State == nil || (w.latest.State != nil && tx.State.Version <= w.latest.State.Version) {
		return
	}
	if !fullySigned(w.params, tx) {
		return
	}
	w.latest = tx.Clone()
}

// Forget tells the tower that owner withdrew from a channel: the tower
// stops watching it once every owner of the node did (both parties may be
// users of one node, and the other one still needs the channel's events
// to withdraw).
func (t *Tower) Forget(id channel.ID, owner common.Address) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.watches[id]
	if !ok {
		return
	}
	delete(w.owners, owner)
	if len(w.owners) == 0 {
		delete(t.watches, id)
	}
}

// Watching tells whether the tower watches id, and its latest version.
func (t *Tower) Watching(id channel.ID) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.watches[id]
	if !ok {
		return 0, false
	}
	return w.latest.State.Version, true
}

// attach adds fn as a receiver of id's events and replays the newest
// on-chain state the tower knows. The returned func detaches.
func (t *Tower) attach(id channel.ID, fn func(Event)) (func(), error) {
	s := &sink{fn: fn}
	t.mu.Lock()
	w, ok := t.watches[id]
	if !ok {
		t.mu.Unlock()
		return nil, fmt.Errorf("attach: channel %x is not watched", id)
	}
	w.sinks[s] = struct{}{}
	var replay *Event
	if w.last != nil {
		ev := t.eventLocked(w, w.last)
		replay = &ev
	}
	t.mu.Unlock()
	if replay != nil {
		fn(*replay)
	}
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if w, ok := t.watches[id]; ok {
			delete(w.sinks, s)
		}
	}, nil
}

// eventLocked builds the event of u for w; t.mu must be held.
func (t *Tower) eventLocked(w *watch, u *update) Event {
	ev := Event{
		ChannelID: u.id, Phase: u.phase, Version: u.version, Timeout: u.timeout, TxHash: u.txHash,
		Latest: w.latest.State.Version,
	}
	for o := range w.owners {
		ev.Owners = append(ev.Owners, o)
	}
	return ev
}

func (t *Tower) enqueueLocked(w work) {
	t.queue = append(t.queue, w)
	t.wakeLocked()
}

// wakeLocked wakes the worker; t.mu must be held.
func (t *Tower) wakeLocked() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// checkAllLocked queues a check of every watched channel; t.mu held.
func (t *Tower) checkAllLocked() {
	for id := range t.watches {
		t.queue = append(t.queue, work{id: id})
	}
	t.wakeLocked()
}

// work runs the queue: checks wait until the subscription is up, so that
// no event falls between a check and the subscription.
func (t *Tower) work() {
	for {
		t.mu.Lock()
		if len(t.queue) == 0 && len(t.retries) > 0 {
			t.dueRetriesLocked(time.Now())
		}
		var next work
		have := false
		if t.subbed && len(t.queue) > 0 {
			next, have = t.queue[0], true
			t.queue[0] = work{}
			t.queue = t.queue[1:]
			if len(t.queue) == 0 {
				t.queue = nil
			}
		}
		var wait time.Duration
		if !have {
			wait = t.nextRetryLocked()
		}
		t.mu.Unlock()
		if !have {
			var timer <-chan time.Time
			if wait > 0 {
				tm := time.NewTimer(wait)
				timer = tm.C
				select {
				case <-t.wake:
				case <-timer:
				case <-t.ctx.Done():
					tm.Stop()
					return
				}
				tm.Stop()
				continue
			}
			select {
			case <-t.wake:
				continue
			case <-t.ctx.Done():
				return
			}
		}
		if next.u == nil {
			t.check(next.id)
			continue
		}
		t.handle(next.u)
	}
}

// retryLocked schedules a check of id at the latest after d (an earlier
// schedule stays); t.mu must be held. Retries need no goroutine: the
// worker queues them when they are due.
func (t *Tower) retryLocked(id channel.ID, d time.Duration) {
	at := time.Now().Add(d)
	if cur, ok := t.retries[id]; ok && cur.Before(at) {
		return
	}
	t.retries[id] = at
	t.wakeLocked()
}

// dueRetriesLocked queues the checks that are due; t.mu must be held.
func (t *Tower) dueRetriesLocked(now time.Time) {
	for id, at := range t.retries {
		if !at.After(now) {
			delete(t.retries, id)
			t.queue = append(t.queue, work{id: id})
		}
	}
}

// nextRetryLocked is how long until the next retry is due (0: none).
func (t *Tower) nextRetryLocked() time.Duration {
	var next time.Time
	for _, at := range t.retries {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if next.IsZero() {
		return 0
	}
	return max(time.Until(next), time.Millisecond)
}

// check reads the adjudicator's state of id and handles it as an update.
func (t *Tower) check(id channel.ID) {
	t.mu.Lock()
	_, ok := t.watches[id]
	t.mu.Unlock()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(t.ctx, 30*time.Second)
	defer cancel()
	d, err := t.caller.Disputes(&bind.CallOpts{Context: ctx}, id)
	t.mu.Lock()
	t.stats.Checks++
	t.mu.Unlock()
	if err != nil {
		if t.ctx.Err() == nil {
			t.o.Log.Warn("watchtower: read the channel's dispute; retrying", "channel", hexID(id), "err", err)
			t.mu.Lock()
			t.retryLocked(id, 2*time.Second)
			t.mu.Unlock()
		}
		return
	}
	if d.Timeout == 0 && d.Version == 0 && d.Phase == 0 {
		return // never registered
	}
	t.handle(&update{id: id, phase: Phase(d.Phase), version: d.Version, timeout: d.Timeout})
}

// handle records an on-chain update of a watched channel, reports it and
// refutes it if it registers an older state than the latest.
func (t *Tower) handle(u *update) {
	t.mu.Lock()
	w, ok := t.watches[u.id]
	if !ok || !u.after(w.last) {
		t.mu.Unlock()
		return
	}
	w.last = u
	t.stats.Events++
	ev := t.eventLocked(w, u)
	refute := u.phase == PhaseRegistered && u.version < w.latest.State.Version && w.refutes == 0
	if refute {
		ev.Refuting = true
		w.refutes = w.latest.State.Version
	}
	ev.Refuted = u.phase == PhaseRegistered && u.version > 0 && (u.version == w.refutes || u.version == w.refuted)
	ev.Final = u.phase == PhaseConcluded && w.latest.State.IsFinal && u.version == w.latest.State.Version
	req := channel.AdjudicatorReq{Params: w.params, Tx: w.latest.Clone()}
	sinks := make([]*sink, 0, len(w.sinks))
	for s := range w.sinks {
		sinks = append(sinks, s)
	}
	t.mu.Unlock()

	if u.txHash != (common.Hash{}) {
		ev.By = t.sender(u.txHash)
	}
	t.o.Log.Info("watchtower: channel event", "channel", hexID(u.id), "phase", u.phase.String(),
		"version", u.version, "latest", ev.Latest, "refuting", ev.Refuting, "by", ev.By.Hex())
	if t.o.OnEvent != nil {
		t.o.OnEvent(ev)
	}
	for _, s := range sinks {
		s.fn(ev)
	}
	// After the event is out: the refutation's outcome (a failure can come
	// at once) must not reach the user before the registration it answers.
	if refute {
		t.startRefute(ev, req)
	}
}

// sender returns the sender of a transaction, or zero.
func (t *Tower) sender(h common.Hash) common.Address {
	ctx, cancel := context.WithTimeout(t.ctx, 10*time.Second)
	defer cancel()
	tx, _, err := t.o.Chain.TransactionByHash(ctx, h)
	if err != nil {
		t.o.Log.Debug("watchtower: read the transaction of an event", "tx", h.Hex(), "err", err)
		return common.Address{}
	}
	from, err := types.Sender(t.signer, tx)
	if err != nil {
		t.o.Log.Debug("watchtower: recover the sender of an event", "tx", h.Hex(), "err", err)
		return common.Address{}
	}
	return from
}

// maxRefuting bounds the refutations in flight.
const maxRefuting = 16

// startRefute registers the latest state in the background. While it
// fails, the channel is checked again after a backoff, which refutes
// again if the dispute is still stale.
func (t *Tower) startRefute(ev Event, req channel.AdjudicatorReq) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.mu.Lock()
		for t.refuting >= maxRefuting && !t.closed {
			t.mu.Unlock()
			select {
			case <-time.After(50 * time.Millisecond):
			case <-t.ctx.Done():
				return
			}
			t.mu.Lock()
		}
		t.refuting++
		t.stats.Refutations++
		t.mu.Unlock()
		ctx, cancel := context.WithTimeout(t.ctx, t.o.RefuteTimeout)
		err := t.refute(ctx, ev, req)
		cancel()
		t.mu.Lock()
		t.refuting--
		failures := 0
		var sinks []*sink
		if w, ok := t.watches[ev.ChannelID]; ok {
			w.refutes = 0
			if err == nil {
				w.refuted = req.Tx.State.Version
			}
			if err != nil {
				for s := range w.sinks {
					sinks = append(sinks, s)
				}
				w.failures++
				failures = w.failures
				// The next check reports and refutes again, unless the
				// chain moved on meanwhile (or it is too late).
				if !errors.Is(err, errTooLate) && w.last != nil && w.last.phase == PhaseRegistered && w.last.version == ev.Version {
					w.last = nil
				}
			} else {
				w.failures = 0
			}
		}
		if err != nil {
			t.stats.RefuteErrors++
		}
		t.mu.Unlock()
		if err == nil {
			t.o.Log.Info("watchtower: refuted", "channel", hexID(ev.ChannelID), "stale", ev.Version, "registered", req.Tx.State.Version)
			return
		}
		if t.ctx.Err() != nil {
			return
		}
		// The user hears of the failure (each time: a retry may succeed).
		failed := ev
		failed.Refuting, failed.RefuteErr = false, err.Error()
		if t.o.OnEvent != nil {
			t.o.OnEvent(failed)
		}
		for _, s := range sinks {
			s.fn(failed)
		}
		if errors.Is(err, errTooLate) {
			t.o.Log.Error("watchtower: cannot refute", "channel", hexID(ev.ChannelID), "err", err)
			return
		}
		d := time.Duration(1<<min(failures, 5)) * time.Second
		t.o.Log.Error("watchtower: refutation failed; checking again", "channel", hexID(ev.ChannelID), "in", d, "err", err)
		t.mu.Lock()
		t.retryLocked(ev.ChannelID, d)
		t.mu.Unlock()
	}()
}

// errTooLate is why a refutation is not sent: the challenge period ended.
var errTooLate = errors.New("the challenge period is over: the registered state stands")

// refute sends the refutation unless the challenge period of ev is over.
func (t *Tower) refute(ctx context.Context, ev Event, req channel.AdjudicatorReq) error {
	if ev.Timeout != 0 {
		h, err := t.o.Chain.HeaderByNumber(ctx, nil)
		if err != nil {
			return fmt.Errorf("read the chain's head: %w", err)
		}
		if h.Time >= ev.Timeout {
			return fmt.Errorf("stale version %d registered until %d, chain time %d: %w", ev.Version, ev.Timeout, h.Time, errTooLate)
		}
	}
	if err := t.o.Refute(ctx, ev.Owners, req); err != nil {
		return fmt.Errorf("register version %d: %w", req.Tx.State.Version, err)
	}
	return nil
}

func hexID(id channel.ID) string { return fmt.Sprintf("0x%x", id[:]) }
