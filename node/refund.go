package node

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/perun-network/perun-eth-backend/bindings/assetholder"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/client"
)

// refundUnfunded returns the user's deposit from a channel whose funding
// failed (the peer's deposit did not come in the funding period, or the
// funding broke off after the user's deposit): the asset holder keeps
// each deposit of a channel that is concluded underfunded, so the node
// settles the channel on its initial state, which both signed (register,
// challenge period, conclude, withdraw). The channel is listed from then
// on, closed by dispute once the deposit is back. Where nothing of the
// user's is held, nothing is sent and the channel is not listed.
func (s *Session) refundUnfunded(ch *client.Channel, rec *txRecorder) {
	s.tasks.goTask("refund "+shortID(ch.ID()), func(ctx context.Context) {
		held, err := s.heldIn(ctx, ch)
		if err == nil && held.Sign() == 0 && len(rec.all()) > 0 {
			// The user's deposit may have been sent but not yet mined
			// (the period ended while it waited): it counts once it is.
			s.waitMined(ctx, rec.all())
			held, err = s.heldIn(ctx, ch)
		}
		switch {
		case err != nil:
			// The chain may not answer now: the deposit, if any, is
			// found by the settle's own read of the chain.
			s.n.log.Warn("read the deposit of a channel whose funding failed; settling it", "channel", idHex(ch.ID()), "err", err)
		case held.Sign() == 0:
			s.n.log.Info("channel not funded; nothing of the user's to return", "channel", idHex(ch.ID()))
			return
		default:
			s.n.log.Warn("channel not funded; settling its initial state to return the deposit", "channel", idHex(ch.ID()), "deposit", held)
		}
		s.onNewChannel(ch)
		s.mu.Lock()
		e := s.channels[ch.ID()]
		s.mu.Unlock()
		e.addTxs(rec.all())
		e.startWatching()
		e.settleInBackground(false, "dispute")
	})
}

// waitMined waits until the transactions hashes are mined, for
// chain.txTimeout at most (one may be dropped).
func (s *Session) waitMined(ctx context.Context, hashes []string) {
	ctx, cancel := context.WithTimeout(ctx, s.n.cfg.Chain.TxTimeout)
	defer cancel()
	for _, h := range hashes {
		if _, err := bind.WaitMinedHash(ctx, s.adj.Adjudicator.ContractBackend, common.HexToHash(h)); err != nil {
			s.n.log.Warn("a transaction of a channel whose funding failed is not mined", "tx", h, "err", err)
			return
		}
	}
}

// heldIn reads what the asset holder holds for the user in ch.
func (s *Session) heldIn(ctx context.Context, ch *client.Channel) (*big.Int, error) {
	return s.heldFor(ctx, ch, ch.Idx())
}

// heldFor reads what the asset holder holds in ch for participant idx.
func (s *Session) heldFor(ctx context.Context, ch *client.Channel, idx channel.Index) (*big.Int, error) {
	a := s.n.assetOf(ch.State().Assets[0])
	if a == nil {
		return nil, errors.New("the channel's asset is not configured")
	}
	ah, err := assetholder.NewAssetholder(a.holder, s.adj.Adjudicator.ContractBackend)
	if err != nil {
		return nil, fmt.Errorf("bind asset holder: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fid := ethchannel.FundingIDs(ch.ID(), ch.Params().Parts[idx])[0]
	return ah.Holdings(&bind.CallOpts{Context: ctx}, fid)
}

// lateness tells whose deposits a channel lacks: the user's, the peer's.
type lateness struct{ ours, theirs bool }

// unfundedOnChain reads from the chain whose deposits ch lacks once its
// funding failed (a deposit short of the agreed balance is missing). The
// funder names the deposits whose events it had not seen when the funding
// period ended or the opening stopped; a deposit mined at that moment is
// in nonetheless, and the chain has the last word. It is nil when the
// chain does not answer.
func (s *Session) unfundedOnChain(ch *client.Channel) *lateness {
	ctx, cancel := context.WithTimeout(s.tasks.ctx, 10*time.Second)
	defer cancel()
	bals := ch.State().Balances[0]
	var l lateness
	for _, p := range []struct {
		idx     channel.Index
		missing *bool
	}{{ch.Idx(), &l.ours}, {1 - ch.Idx(), &l.theirs}} {
		held, err := s.heldFor(ctx, ch, p.idx)
		if err != nil {
			s.n.log.Warn("read the deposits of a channel whose funding failed", "channel", idHex(ch.ID()), "err", err)
			return nil
		}
		*p.missing = held.Cmp(bals[p.idx]) < 0
	}
	return &l
}

// refundIfHeld returns the user's deposit from a restored channel whose
// opening never completed (the node stopped while the funding was under
// way, so refundUnfunded never ran): once the deposit is found on chain,
// the channel is settled on its initial state. A channel with nothing of
// the user's in it stays as it is.
func (e *channelEntry) refundIfHeld() {
	e.s.tasks.goTask("refund "+shortID(e.id), func(ctx context.Context) {
		held, err := e.s.heldIn(ctx, e.ch)
		if err != nil {
			e.s.n.log.Warn("read the deposit of a channel restored unfunded; tried again at the next login", "channel", idHex(e.id), "err", err)
			return
		}
		if held.Sign() == 0 {
			return
		}
		e.s.n.log.Warn("channel restored unfunded; settling its initial state to return the deposit", "channel", idHex(e.id), "deposit", held)
		e.settleInBackground(false, "dispute")
	})
}
