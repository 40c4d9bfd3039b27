package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/ethereum/go-ethereum/common"
	ethwallet "github.com/perun-network/perun-eth-backend/wallet"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/client"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/subscriptions"
	"github.com/perund/perund/wireid"
)

// decision is a user's answer to a pending proposal or update.
type decision struct {
	accept bool
	reason string
	result chan decisionResult
}

type decisionResult struct {
	ch  *ChannelInfo
	err error
}

type pendingProposal struct {
	info    ProposalInfo
	decide  chan decision
	decided bool
}

type pendingUpdate struct {
	info    UpdateInfo
	decide  chan decision
	decided bool
}

func (s *Session) participant() map[wallet.BackendID]wallet.Address {
	return map[wallet.BackendID]wallet.Address{ethwallet.BackendID: ethwallet.AsWalletAddr(s.addr)}
}

// openTimeout bounds a whole channel opening: the peer's answer, the
// deposits and the wait for the peer's deposit.
func (s *Session) openTimeout(challenge uint64) time.Duration {
	cfg := s.n.cfg
	return 2*cfg.Channel.ResponseTimeout + 3*cfg.Chain.TxTimeout + time.Duration(challenge)*time.Second + 5*time.Second
}

// OpenChannel proposes a ledger channel to a contact and returns it once the
// peer accepted and both deposits are confirmed.
func (s *Session) OpenChannel(ctx context.Context, peerRef, symbol string, mine, theirs *big.Int, challenge uint64) (ChannelInfo, error) {
	asset, err := s.n.asset(symbol)
	if err != nil {
		return ChannelInfo{}, err
	}
	c, err := s.contacts.Resolve(peerRef)
	if err != nil {
		return ChannelInfo{}, &NotFoundError{Resource: "contact", ID: peerRef}
	}
	if mine == nil || theirs == nil || mine.Sign() < 0 || theirs.Sign() < 0 || mine.Sign()+theirs.Sign() == 0 {
		return ChannelInfo{}, &InvalidArgError{Field: "balance", Msg: "amounts must be non-negative and not both zero"}
	}
	if challenge == 0 {
		challenge = s.n.cfg.Channel.ChallengeDuration
	}
	if minimum := s.n.cfg.Channel.MinChallengeDuration; challenge < minimum {
		return ChannelInfo{}, &InvalidArgError{Field: "challengeDuration",
			Msg: fmt.Sprintf("must be at least %d seconds: funding must complete within one challenge duration of block time", minimum)}
	}
	onChain, err := s.n.AssetBalance(ctx, asset.symbol, s.addr)
	if err != nil {
		return ChannelInfo{}, err
	}
	if onChain.Cmp(mine) < 0 {
		return ChannelInfo{}, &InsufficientFundsError{Where: "on-chain (" + asset.symbol + ")", Available: onChain.String(), Needed: mine.String()}
	}
	// A quick reachability check gives a clear error before go-perun's
	// publish retries (three attempts, seconds apart).
	// (A user of this node is dialled at the node's own port.)
	s.n.setHost(c.Address, c.CommAddress)
	hostPort, _ := s.n.hosts.Lookup(c.Address)
	d := net.Dialer{Timeout: s.n.cfg.Comm.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", hostPort)
	if err != nil {
		return ChannelInfo{}, &PeerUnreachableError{Peer: c.Alias, CommAddress: c.CommAddress, Err: err}
	}
	conn.Close()

	alloc := channel.NewAllocation(2, []wallet.BackendID{ethwallet.BackendID}, asset.asset)
	alloc.SetAssetBalances(asset.asset, []channel.Bal{new(big.Int).Set(mine), new(big.Int).Set(theirs)})
	prop, err := client.NewLedgerChannelProposal(challenge, s.participant(), alloc,
		[]map[wallet.BackendID]wire.Address{wireid.NewAddress(s.addr).Map(), wireid.NewAddress(c.Address).Map()})
	if err != nil {
		return ChannelInfo{}, fmt.Errorf("build proposal: %w", err)
	}
	timeout := s.openTimeout(challenge)
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pctx, rec := withRecorder(pctx)
	started := time.Now()
	ch, err := s.client.ProposeChannel(pctx, prop)
	if err != nil {
		o := openAttempt{peer: c.Alias, commAddr: c.CommAddress, idx: 0,
			challenge: challenge, timeout: timeout, elapsed: time.Since(started)}
		if ch != nil {
			o.unfunded = s.unfundedOnChain(ch)
			s.refundUnfunded(ch, rec)
		}
		return ChannelInfo{}, s.mapOpenErr(err, o, rec)
	}
	return s.finishOpen(ch, rec), nil
}

func (s *Session) finishOpen(ch *client.Channel, rec *txRecorder) ChannelInfo {
	s.onNewChannel(ch) // no-op if go-perun already announced it
	s.mu.Lock()
	e := s.channels[ch.ID()]
	s.mu.Unlock()
	e.addTxs(rec.all())
	e.markOpen()
	s.n.log.Info("channel open", "channel", idHex(ch.ID()), "peer", e.peer.Hex())
	return e.info()
}

// openAttempt describes a channel opening that failed, for its error.
type openAttempt struct {
	peer, commAddr string
	idx            channel.Index // the user's index in the channel
	challenge      uint64        // seconds of block time the funding may take
	timeout        time.Duration // the bound of the whole opening
	elapsed        time.Duration // how long the opening really took
	// unfunded is whose deposits the chain lacked once the funding failed
	// (nil: the funding did not start, or the chain did not answer).
	unfunded *lateness
}

// lateDeposit names whose deposit did not arrive within the funding period
// (the challenge duration, of block time), with the real time it took.
func lateDeposit(late lateness, o openAttempt) error {
	what := fmt.Sprintf("waiting for %s's deposit (the funding period is %d s of block time)", o.peer, o.challenge)
	switch {
	case late.ours && late.theirs:
		what = fmt.Sprintf("waiting for both deposits (the funding period is %d s of block time)", o.challenge)
	case late.ours:
		what = fmt.Sprintf("waiting for your deposit (the funding period is %d s of block time)", o.challenge)
	case !late.theirs:
		// Both are on chain: they came in as the period ended, after
		// the funder stopped waiting. The channel did not open; the
		// deposits are returned by a dispute of its initial state.
		what = fmt.Sprintf("confirming the deposits (both are on chain, but the funding period of %d s of block time ended first; your deposit is returned)", o.challenge)
	}
	return &TimeoutError{What: what, Timeout: o.elapsed.Round(100 * time.Millisecond)}
}

// lateParties tells whose deposits a funding timeout names: the user's
// (index idx), the peer's.
func lateParties(fto channel.FundingTimeoutError, idx channel.Index) lateness {
	var l lateness
	for _, e := range fto.Errors {
		for _, p := range e.TimedOutPeers {
			if p == idx {
				l.ours = true
			} else {
				l.theirs = true
			}
		}
	}
	return l
}

func (s *Session) mapOpenErr(err error, o openAttempt, rec *txRecorder) error {
	peer, commAddr, timeout := o.peer, o.commAddr, o.timeout
	switch classify(err) {
	case failPeerRejected:
		return &PeerRejectedError{Peer: peer, Reason: rejectReason(err)}
	case failPeerDepositLate:
		// A deposit did not come within the challenge duration (of block
		// time); a deposit made is refunded by a dispute.
		var fto channel.FundingTimeoutError
		errors.As(fundingCause(err), &fto)
		late := lateParties(fto, o.idx)
		if u := o.unfunded; u != nil {
			// The funder names the deposits whose events it had not seen
			// when the period ended; the chain tells which are missing.
			late = *u
		}
		if late.ours && rec.sendErr() != nil {
			// perun-eth-backend reports the funding timeout before the
			// error of the deposit that the chain refused.
			chain.ResetNonce(s.n.chainID, s.addr)
			return chainErr(fmt.Errorf("your deposit failed after %s: %w", o.elapsed.Round(100*time.Millisecond), rec.sendErr()), rec)
		}
		return lateDeposit(late, o)
	case failFunding:
		var txTimeout client.TxTimedoutError
		if u := o.unfunded; u != nil && !u.ours && rec.sendErr() == nil && errors.As(fundingCause(err), &txTimeout) {
			// The user's deposit is in: the end of the funding period only
			// cut short the wait for its confirmation. The peer's is what
			// is missing, or nothing is.
			return lateDeposit(*u, o)
		}
		chain.ResetNonce(s.n.chainID, s.addr)
		return chainErr(fmt.Errorf("your deposit failed after %s: %w", o.elapsed.Round(100*time.Millisecond), err), rec)
	case failPeerNoAnswer:
		return &TimeoutError{What: "waiting for the peer's answer to the proposal", Timeout: s.n.cfg.Channel.ResponseTimeout}
	case failPeerUnreachable:
		return &PeerUnreachableError{Peer: peer, CommAddress: commAddr, Err: err}
	case failDeadline:
		return &TimeoutError{What: "opening the channel", Timeout: timeout}
	}
	return fmt.Errorf("open channel with %s: %w", peer, err)
}

// fundingCause is the error inside a go-perun funding error (which has no
// Unwrap), or err itself.
func fundingCause(err error) error {
	var fund *client.ChannelFundingError
	if errors.As(err, &fund) && fund.Err != nil {
		return fund.Err
	}
	return err
}

// handleProposal is go-perun's callback for incoming channel proposals. It
// runs in its own goroutine and answers exactly once.
func (s *Session) handleProposal(p client.ChannelProposal, r *client.ProposalResponder) {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		s.rejectProposal(r, "session closing")
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()

	lcp, ok := p.(*client.LedgerChannelProposalMsg)
	if !ok {
		s.rejectProposal(r, "only ledger channels are supported")
		return
	}
	peer, asset, err := s.validProposal(lcp)
	if err != nil {
		s.rejectProposal(r, err.Error())
		return
	}
	bals := lcp.InitBals.Balances[0]
	cfg := s.n.cfg
	pp := &pendingProposal{
		info: ProposalInfo{
			ProposalID:        "0x" + hex.EncodeToString(lcp.ProposalID[:]),
			Peer:              s.peerName(peer),
			Asset:             asset.symbol,
			Balance:           Balance{Mine: bals[1].String(), Theirs: bals[0].String()},
			ChallengeDuration: lcp.ChallengeDuration,
			ExpiresAt:         time.Now().Add(cfg.Channel.ResponseTimeout).UTC().Truncate(time.Millisecond),
		},
		decide: make(chan decision, 1),
	}
	pp.info.Fundable = true
	if short, _ := s.shortfall(asset, bals[1]); short != nil {
		pp.info.Fundable, pp.info.Shortfall = false, short.String()
	}
	s.mu.Lock()
	s.proposals[pp.info.ProposalID] = pp
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.proposals, pp.info.ProposalID)
		s.mu.Unlock()
	}()
	ev := pp.info
	ev.Status = StatusPending
	s.hub.Publish(subscriptions.Proposals, ev)

	timer := time.NewTimer(cfg.Channel.ResponseTimeout)
	defer timer.Stop()
	var d decision
	select {
	case d = <-pp.decide:
	case <-timer.C:
		s.mu.Lock()
		pp.decided = true
		s.mu.Unlock()
		// A decision may have raced the timer.
		select {
		case d = <-pp.decide:
		default:
			s.rejectProposal(r, "proposal expired")
			s.n.metrics.Proposal(StatusExpired)
			ev.Status = StatusExpired
			s.hub.Publish(subscriptions.Proposals, ev)
			return
		}
	case <-s.stop:
		s.rejectProposal(r, "session closing")
		return
	}
	if !d.accept {
		s.n.metrics.Proposal(StatusRejected)
		s.rejectProposal(r, d.reason)
		d.result <- decisionResult{}
		return
	}
	timeout := s.openTimeout(lcp.ChallengeDuration)
	ctx, cancel := context.WithTimeout(s.tasks.ctx, timeout)
	defer cancel()
	ctx, rec := withRecorder(ctx)
	started := time.Now()
	ch, err := r.Accept(ctx, lcp.Accept(s.participant(), client.WithRandomNonce()))
	if err != nil {
		o := openAttempt{peer: s.peerName(peer), idx: 1,
			challenge: lcp.ChallengeDuration, timeout: timeout, elapsed: time.Since(started)}
		if ch != nil {
			o.unfunded = s.unfundedOnChain(ch)
			s.refundUnfunded(ch, rec)
		}
		d.result <- decisionResult{err: s.mapOpenErr(err, o, rec)}
		return
	}
	s.n.metrics.Proposal(StatusAccepted)
	ci := s.finishOpen(ch, rec)
	d.result <- decisionResult{ch: &ci}
}

func (s *Session) rejectProposal(r *client.ProposalResponder, reason string) {
	ctx, cancel := context.WithTimeout(s.tasks.ctx, 5*time.Second)
	defer cancel()
	if err := r.Reject(ctx, reason); err != nil {
		s.n.log.Debug("reject proposal", "err", err)
	}
}

func (s *Session) validProposal(lcp *client.LedgerChannelProposalMsg) (common.Address, *assetEntry, error) {
	if len(lcp.Peers) != 2 {
		return common.Address{}, nil, errors.New("only two-party channels are supported")
	}
	w, ok := lcp.Peers[0][wireid.BackendID].(*wireid.Address)
	if !ok {
		return common.Address{}, nil, errors.New("unsupported peer address type")
	}
	peer := w.Eth()
	pa, ok := lcp.Participant[ethwallet.BackendID]
	if !ok || ethwallet.AsEthAddr(pa) != peer {
		return peer, nil, errors.New("the participant address must be the proposer's address")
	}
	if lcp.App != nil && !channel.IsNoApp(lcp.App) {
		return peer, nil, errors.New("app channels are not supported")
	}
	if len(lcp.InitBals.Assets) != 1 {
		return peer, nil, errors.New("only single-asset channels are supported")
	}
	asset := s.n.assetOf(lcp.InitBals.Assets[0])
	if asset == nil {
		return peer, nil, errors.New("unsupported asset")
	}
	if len(lcp.InitBals.Balances) != 1 || len(lcp.InitBals.Balances[0]) != 2 {
		return peer, nil, errors.New("bad balances")
	}
	if lcp.FundingAgreement != nil && !lcp.FundingAgreement.Equal(lcp.InitBals.Balances) {
		return peer, nil, errors.New("funding agreement must equal the initial balances")
	}
	if minimum := s.n.cfg.Channel.MinChallengeDuration; lcp.ChallengeDuration < minimum {
		return peer, nil, fmt.Errorf("challenge duration %d s is below this node's minimum of %d s", lcp.ChallengeDuration, minimum)
	}
	return peer, asset, nil
}

// shortfall returns what the user lacks on chain to put need of asset
// into a channel (nil: nothing) and the balance it read. A balance that
// cannot be read counts as enough (the deposit then says what failed).
func (s *Session) shortfall(asset *assetEntry, need *big.Int) (short, have *big.Int) {
	if need.Sign() == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(s.tasks.ctx, 5*time.Second)
	defer cancel()
	have, err := s.n.AssetBalance(ctx, asset.symbol, s.addr)
	if err != nil {
		s.n.log.Debug("read balance for a proposal", "address", s.addr.Hex(), "err", err)
		return nil, nil
	}
	if have.Cmp(need) >= 0 {
		return nil, have
	}
	return new(big.Int).Sub(need, have), have
}

// Proposals lists the proposals waiting for an answer.
func (s *Session) Proposals() []ProposalInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProposalInfo, 0, len(s.proposals))
	for _, p := range s.proposals {
		if !p.decided {
			out = append(out, p.info)
		}
	}
	return out
}

// RespondProposal answers a pending proposal. Accepting returns the channel
// once it is funded.
func (s *Session) RespondProposal(ctx context.Context, id string, accept bool, reason string) (*ChannelInfo, error) {
	s.mu.Lock()
	p, ok := s.proposals[id]
	if ok && p.decided {
		s.mu.Unlock()
		return nil, &StateError{State: "decided", Msg: "proposal already answered or expired"}
	}
	if ok {
		p.decided = true
	}
	s.mu.Unlock()
	if !ok {
		return nil, &NotFoundError{Resource: "proposal", ID: id}
	}
	if accept {
		// Refused before any transaction when the user cannot fund their
		// share (checked again: funds may have arrived); the proposal
		// stays pending, to be rejected or accepted once funded.
		if err := s.checkFundable(p); err != nil {
			s.mu.Lock()
			p.decided = false
			s.mu.Unlock()
			return nil, err
		}
	}
	if reason == "" {
		reason = "rejected by user"
	}
	d := decision{accept: accept, reason: reason, result: make(chan decisionResult, 1)}
	p.decide <- d
	select {
	case res := <-d.result:
		return res.ch, res.err
	case <-ctx.Done():
		return nil, &TimeoutError{What: "waiting for the channel to be funded", Timeout: 0}
	}
}

// checkFundable refuses accepting p while the user's balance does not
// cover their share.
func (s *Session) checkFundable(p *pendingProposal) error {
	need, ok := new(big.Int).SetString(p.info.Balance.Mine, 10)
	if !ok {
		return nil
	}
	a, err := s.n.asset(p.info.Asset)
	if err != nil {
		return nil //nolint:nilerr // an unknown asset was refused when the proposal came
	}
	if short, have := s.shortfall(a, need); short != nil {
		return &InsufficientFundsError{Where: "on chain (" + p.info.Asset + ")", Available: have.String(), Needed: need.String()}
	}
	return nil
}

// handleUpdate is go-perun's callback for incoming channel updates. It runs
// in its own goroutine with the channel locked and answers exactly once.
func (s *Session) handleUpdate(cur *channel.State, next client.ChannelUpdate, r *client.UpdateResponder) {
	s.mu.Lock()
	e, ok := s.channels[cur.ID]
	stopping := s.stopping
	manual := s.manual
	if !stopping {
		s.handlers.Add(1)
	}
	s.mu.Unlock()
	if stopping {
		s.rejectUpdate(r, "session closing")
		return
	}
	defer s.handlers.Done()
	if !ok {
		s.rejectUpdate(r, "unknown channel")
		return
	}
	e.mu.Lock()
	collided := e.col.mustReject(next.State.Version, e.idx)
	e.mu.Unlock()
	if collided {
		s.rejectUpdate(r, "update collision")
		return
	}
	idx := e.idx
	mineCur, mineNext := cur.Balances[0][idx], next.State.Balances[0][idx]
	delta := new(big.Int).Sub(mineNext, mineCur)
	info := UpdateInfo{
		UpdateID:  randomHex(32),
		ChannelID: idHex(cur.ID),
		Peer:      s.peerName(e.peer),
		Version:   next.State.Version,
		Balance:   Balance{Mine: mineNext.String(), Theirs: next.State.Balances[0][1-idx].String()},
		ExpiresAt: time.Now().Add(s.n.cfg.Channel.ResponseTimeout).UTC().Truncate(time.Millisecond),
	}
	auto := false
	switch {
	case next.State.IsFinal:
		if delta.Sign() != 0 {
			s.rejectUpdate(r, "a final state must not move funds")
			return
		}
		info.Kind, info.Amount = KindClose, "0"
		auto = s.n.cfg.Channel.AutoAcceptClose
	case delta.Sign() > 0:
		info.Kind, info.Amount = KindPayment, delta.String()
		auto = !manual
	case delta.Sign() < 0:
		info.Kind, info.Amount = KindRequest, new(big.Int).Neg(delta).String()
	default:
		s.rejectUpdate(r, "empty update")
		return
	}
	if auto {
		ctx, cancel := context.WithTimeout(s.tasks.ctx, 10*time.Second)
		err := r.Accept(ctx)
		cancel()
		if err != nil {
			s.n.log.Warn("accept update", "channel", info.ChannelID, "err", err)
			return
		}
		info.Status = StatusAccepted
		s.n.metrics.Update(info.Kind, StatusAccepted)
		s.hub.Publish(subscriptions.Updates, info)
		if next.State.IsFinal {
			e.settleInBackground(true, "agreement")
		}
		return
	}
	pu := &pendingUpdate{info: info, decide: make(chan decision, 1)}
	s.mu.Lock()
	s.updates[info.UpdateID] = pu
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.updates, info.UpdateID)
		s.mu.Unlock()
	}()
	ev := info
	ev.Status = StatusPending
	s.hub.Publish(subscriptions.Updates, ev)
	timer := time.NewTimer(s.n.cfg.Channel.ResponseTimeout)
	defer timer.Stop()
	var d decision
	select {
	case d = <-pu.decide:
	case <-timer.C:
		s.mu.Lock()
		pu.decided = true
		s.mu.Unlock()
		select {
		case d = <-pu.decide:
		default:
			s.rejectUpdate(r, "update expired")
			s.n.metrics.Update(ev.Kind, StatusExpired)
			ev.Status = StatusExpired
			s.hub.Publish(subscriptions.Updates, ev)
			return
		}
	case <-s.stop:
		s.rejectUpdate(r, "session closing")
		return
	}
	if !d.accept {
		s.rejectUpdate(r, d.reason)
		s.n.metrics.Update(ev.Kind, StatusRejected)
		ev.Status = StatusRejected
		s.hub.Publish(subscriptions.Updates, ev)
		d.result <- decisionResult{}
		return
	}
	ctx, cancel := context.WithTimeout(s.tasks.ctx, 10*time.Second)
	err := r.Accept(ctx)
	cancel()
	if err != nil {
		d.result <- decisionResult{err: fmt.Errorf("accept update: %w", err)}
		return
	}
	ev.Status = StatusAccepted
	s.n.metrics.Update(ev.Kind, StatusAccepted)
	s.hub.Publish(subscriptions.Updates, ev)
	if next.State.IsFinal {
		e.mu.Lock()
		e.moveLocked(StateClosing)
		e.mu.Unlock()
		e.settleInBackground(true, "agreement")
	}
	// The new state is enabled once Accept returns; report it as such.
	ci := e.info()
	ci.Version = next.State.Version
	ci.Balance = info.Balance
	d.result <- decisionResult{ch: &ci}
}

func (s *Session) rejectUpdate(r *client.UpdateResponder, reason string) {
	ctx, cancel := context.WithTimeout(s.tasks.ctx, 5*time.Second)
	defer cancel()
	if err := r.Reject(ctx, reason); err != nil {
		s.n.log.Debug("reject update", "err", err)
	}
}

// Updates lists the incoming updates waiting for an answer.
func (s *Session) Updates() []UpdateInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]UpdateInfo, 0, len(s.updates))
	for _, u := range s.updates {
		if !u.decided {
			out = append(out, u.info)
		}
	}
	return out
}

// RespondUpdate answers a pending incoming update.
func (s *Session) RespondUpdate(ctx context.Context, id string, accept bool, reason string) (*ChannelInfo, error) {
	s.mu.Lock()
	u, ok := s.updates[id]
	if ok && u.decided {
		s.mu.Unlock()
		return nil, &StateError{State: "decided", Msg: "update already answered or expired"}
	}
	if ok {
		u.decided = true
	}
	s.mu.Unlock()
	if !ok {
		return nil, &NotFoundError{Resource: "update", ID: id}
	}
	if reason == "" {
		reason = "rejected by user"
	}
	d := decision{accept: accept, reason: reason, result: make(chan decisionResult, 1)}
	u.decide <- d
	select {
	case res := <-d.result:
		return res.ch, res.err
	case <-ctx.Done():
		return nil, &TimeoutError{What: "answering the update", Timeout: 0}
	}
}
