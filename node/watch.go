package node

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/perun-network/perun-eth-backend/bindings/adjudicator"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	"perun.network/go-perun/channel"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/peer"
	"github.com/perund/perund/store"
	"github.com/perund/perund/subscriptions"
	"github.com/perund/perund/watchtower"
)

// disputeKey is the record prefix of a user's dispute log in the store:
// "dispute/" + the time recorded (unix nanoseconds, 20 digits) + "/" +
// the channel id, so that records list in the order they happened.
const disputeKey = "dispute/"

// disputeRecord is one entry of a user's dispute log.
type disputeRecord struct {
	DisputeEvent
	// Pending: the user was logged out when it happened and has not been
	// told yet; their next session's disputes subscription delivers it.
	Pending bool `json:"pending,omitempty"`
}

// startTower sets up the node's watchtower: the operator account that
// sends refutations (op, nil for none), every stored channel of every user
// watched, and the tower's chain subscription started.
func (n *Node) startTower(ctx context.Context, op *ecdsa.PrivateKey) error {
	if op != nil {
		addr := crypto.PubkeyToAddress(op.PublicKey)
		chain.ResetNonce(n.chainID, addr)
		cb, acc := chain.KeyBackend(n.chain, n.chainID, op, chain.TxPolicy{Confirmations: n.cfg.Chain.Confirmations})
		n.operator = addr
		n.opAdj = ethchannel.NewAdjudicator(cb, n.contracts.Adjudicator, addr, acc, adjudicatorGasLimit)
	}
	caller, err := adjudicator.NewAdjudicatorCaller(n.contracts.Adjudicator, n.chain)
	if err != nil {
		return fmt.Errorf("bind adjudicator: %w", err)
	}
	n.adjCaller = caller
	tw, err := watchtower.New(watchtower.Options{
		Chain: n.chain, ChainID: n.chainID, Adjudicator: n.contracts.Adjudicator,
		Refute: n.refute, OnEvent: n.recordDispute, Log: n.log,
		RefuteTimeout: 2 * n.cfg.Chain.TxTimeout,
	})
	if err != nil {
		return err
	}
	n.tower = tw
	start := time.Now()
	users, channels, err := n.watchStored(ctx)
	if err != nil {
		return err
	}
	tw.Start()
	if op == nil {
		n.log.Warn("watchtower has no operator account (watcher.account): a stale state registered against a user who is logged out is not refuted")
	}
	n.log.Info("watchtower started", "users", users, "channels", channels, "operator", n.operator.Hex(), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// watchStored hands every stored channel of every user, with its latest
// state signed by both parties, to the tower.
func (n *Node) watchStored(ctx context.Context) (users, channels int, err error) {
	list, err := n.store.Users(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("watch stored channels: %w", err)
	}
	for _, u := range list {
		c, err := n.watchUser(ctx, u)
		if err != nil {
			return users, channels, fmt.Errorf("watch stored channels of %s: %w", u.Hex(), err)
		}
		if c > 0 {
			users++
			channels += c
		}
	}
	return users, channels, nil
}

func (n *Node) watchUser(ctx context.Context, u common.Address) (int, error) {
	v := n.store.User(u)
	defer v.Close()
	it, err := v.RestoreAll()
	if err != nil {
		return 0, err
	}
	count := 0
	for it.Next(ctx) {
		ch := it.Channel()
		if ch.Phase() == channel.Withdrawn {
			continue
		}
		tx := ch.CurrentTX()
		ss := channel.SignedState{Params: ch.Params(), State: tx.State, Sigs: tx.Sigs}
		if err := n.tower.Watch(u, ss); err != nil {
			n.log.Debug("channel not watched: no state signed by both", "channel", idHex(ch.ID()), "phase", ch.Phase().String())
			continue
		}
		count++
	}
	if err := it.Close(); err != nil {
		return count, err
	}
	return count, nil
}

// WatchStats returns the counters of the node's watchtower: channels
// watched, checks made, refutations sent and failed, whether its chain
// subscription is up.
func (n *Node) WatchStats() watchtower.Stats { return n.tower.Stats() }

// PeerStats returns the counters of the node's peer port: connections from
// other nodes accepted and refused (users of this node reach each other in
// process, without a connection).
func (n *Node) PeerStats() peer.PortStats { return n.port.Stats() }

// refute sends a refutation: from the operator account, or, without one,
// from the account of a party that is logged in.
func (n *Node) refute(ctx context.Context, owners []common.Address, req channel.AdjudicatorReq) error {
	if err := n.checkGate(); err != nil {
		return err
	}
	if n.opAdj != nil {
		err := n.opAdj.Register(ctx, req, nil)
		if err != nil {
			chain.ResetNonce(n.chainID, n.operator)
		}
		return err
	}
	for _, o := range owners {
		n.mu.Lock()
		s := n.sessions[o]
		n.mu.Unlock()
		if s != nil {
			err := s.adj.Register(ctx, req, nil)
			if err != nil {
				chain.ResetNonce(n.chainID, o)
			}
			return err
		}
	}
	return errors.New("no operator account (watcher.account) and no party of the channel is logged in")
}

// recordDispute adds an event of the tower to the dispute log of each
// user of the node who is a party; it is pending for those not logged in.
func (n *Node) recordDispute(ev watchtower.Event) {
	if ev.Final {
		return // a cooperative close: the channels topic tells it
	}
	n.metrics.Dispute(ev.Phase.String())
	if ev.Refuted {
		n.metrics.Dispute("refuted")
	}
	key := fmt.Sprintf("%s%020d/%s", disputeKey, time.Now().UnixNano(), idHex(ev.ChannelID))
	for _, owner := range ev.Owners {
		n.mu.Lock()
		_, open := n.sessions[owner]
		n.mu.Unlock()
		rec := disputeRecord{DisputeEvent: n.disputeEvent(ev, owner, false), Pending: !open}
		if err := n.putDispute(owner, key, rec); err != nil {
			n.log.Error("record dispute event", "address", owner.Hex(), "channel", idHex(ev.ChannelID), "err", err)
		}
	}
}

func (n *Node) putDispute(owner common.Address, key string, rec disputeRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode dispute record: %w", err)
	}
	v := n.store.User(owner)
	defer v.Close()
	return v.PutRecord(key, data)
}

// disputes returns owner's dispute log (of one channel if id is not
// empty) with each record's key, oldest first.
func (n *Node) disputes(owner common.Address, id string) ([]store.Record, []disputeRecord, error) {
	v := n.store.User(owner)
	defer v.Close()
	recs, err := v.Records(disputeKey)
	if err != nil {
		return nil, nil, err
	}
	var keys []store.Record
	var out []disputeRecord
	for _, r := range recs {
		if id != "" && !strings.HasSuffix(r.Key, "/"+id) {
			continue
		}
		var d disputeRecord
		if err := json.Unmarshal(r.Value, &d); err != nil {
			n.log.Warn("skip unreadable dispute record", "address", owner.Hex(), "key", r.Key, "err", err)
			continue
		}
		keys = append(keys, r)
		out = append(out, d)
	}
	return keys, out, nil
}

// disputeEvent describes ev to owner. Whether the peer registered comes
// from the transaction's sender; when the tower found the dispute by
// reading the contract, the sender is unknown and weRegistered decides.
func (n *Node) disputeEvent(ev watchtower.Event, owner common.Address, weRegistered bool) DisputeEvent {
	de := DisputeEvent{ChannelID: idHex(ev.ChannelID), Event: ev.Phase.String(), Version: ev.Version, ByPeer: !weRegistered}
	if ev.Timeout > 0 {
		de.Timeout = time.Unix(int64(ev.Timeout), 0).UTC()
	}
	if ev.TxHash != (common.Hash{}) {
		de.TxHash = ev.TxHash.Hex()
	}
	if ev.By != (common.Address{}) {
		de.Sender = ev.By.Hex()
		de.ByPeer = ev.By != owner && ev.By != n.operator
		de.ByWatcher = ev.By == n.operator
	}
	switch ev.Phase {
	case watchtower.PhaseRegistered:
		switch {
		case ev.RefuteErr != "":
			de.Refutation = RefutationFailed
			de.Response = "refutation failed: " + ev.RefuteErr
		case ev.Version < ev.Latest:
			de.Refutation = RefutationSending
			de.Response = fmt.Sprintf("refuting with version %d", ev.Latest)
		case ev.Version > ev.Latest:
			de.Response = fmt.Sprintf("version %d is registered, newer than this node's latest version %d: its outcome stands; withdrawing after the challenge period", ev.Version, ev.Latest)
		case ev.Refuted:
			de.Refutation = RefutationMined
			de.Response = fmt.Sprintf("refuted: version %d is registered; withdrawing after the challenge period", ev.Version)
		case de.ByPeer:
			de.Response = "the latest state is registered; withdrawing after the challenge period"
		default:
			de.Response = "registered; withdrawing after the challenge period"
		}
	case watchtower.PhaseConcluded:
		de.Response = "withdrawing"
	}
	return de
}

// Disputes returns the user's dispute log, oldest first: every on-chain
// event of their channels that the node saw, logged in or not; of one
// channel if channelID is not empty.
func (s *Session) Disputes(channelID string) ([]DisputeEvent, error) {
	if channelID != "" {
		if _, err := parseID(channelID); err != nil {
			return nil, &InvalidArgError{Field: "channelId", Msg: err.Error()}
		}
		channelID = strings.ToLower(channelID)
	}
	_, recs, err := s.n.disputes(s.addr, channelID)
	if err != nil {
		return nil, fmt.Errorf("read dispute log: %w", err)
	}
	out := make([]DisputeEvent, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.DisputeEvent)
	}
	return out, nil
}

// holdPendingDisputes hands the events that happened while the user was
// logged out to the session's disputes topic (its first subscriber gets
// them) and marks them told.
func (s *Session) holdPendingDisputes() {
	keys, recs, err := s.n.disputes(s.addr, "")
	if err != nil {
		s.n.log.Error("read dispute log", "address", s.addr.Hex(), "err", err)
		return
	}
	held := 0
	for i, r := range recs {
		if !r.Pending {
			continue
		}
		s.hub.Hold(subscriptions.Disputes, r.DisputeEvent)
		r.Pending = false
		if err := s.n.putDispute(s.addr, keys[i].Key, r); err != nil {
			s.n.log.Error("mark dispute event told", "address", s.addr.Hex(), "err", err)
		}
		held++
	}
	if held > 0 {
		s.n.log.Info("dispute events while logged out", "address", s.addr.Hex(), "events", held)
	}
}

// onTowerEvent receives the tower's events of the session's channels.
func (s *Session) onTowerEvent(ev watchtower.Event) {
	s.mu.Lock()
	e := s.channels[ev.ChannelID]
	s.mu.Unlock()
	if e != nil {
		e.handleEvent(ev)
	}
}
