package node

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/perun-network/perun-eth-backend/bindings/adjudicator"
	"github.com/perun-network/perun-eth-backend/bindings/assetholder"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	ethwallet "github.com/perun-network/perun-eth-backend/wallet"
	"perun.network/go-perun/channel"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/subscriptions"
	"github.com/perund/perund/watchtower"
)

// chainDispute is the adjudicator's entry of a channel (its disputes map).
type chainDispute struct {
	Phase   watchtower.Phase
	Version uint64
	Timeout uint64 // unix seconds: the end of the challenge period
	// Registered: the channel has an entry at all (a registration or a
	// conclusion happened).
	Registered bool
}

// verdict is what the node does with a channel whose on-chain entry is d
// while its latest state signed by both parties has version local.
type verdict int

const (
	// verdictSettle: go-perun's settle can finish the channel with the
	// latest state (nothing registered, the latest registered, or an older
	// one that can still be refuted).
	verdictSettle verdict = iota
	// verdictAdopt: the chain concluded another version than the latest:
	// that version is the channel's outcome; registering or concluding
	// again would only revert. The node withdraws its share of it.
	verdictAdopt
	// verdictAwait: another version than the latest stands and cannot be
	// refuted any more (the challenge period is over), or the chain holds
	// a newer version than the node: nothing the node could send would
	// change it. The node waits for the conclusion, then adopts it.
	verdictAwait
)

func (v verdict) String() string {
	switch v {
	case verdictSettle:
		return "settle"
	case verdictAdopt:
		return "adopt"
	case verdictAwait:
		return "await"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// judge decides what to do with a channel whose on-chain entry is d, whose
// latest state has version local, at chain time now (unix seconds).
func judge(d chainDispute, local, now uint64) verdict {
	if !d.Registered || d.Version == local {
		return verdictSettle
	}
	if d.Phase == watchtower.PhaseConcluded {
		return verdictAdopt
	}
	if d.Version > local || now >= d.Timeout {
		return verdictAwait
	}
	return verdictSettle // stale and still refutable
}

// readDispute reads the adjudicator's entry of id and the chain's time.
func (n *Node) readDispute(ctx context.Context, id channel.ID) (chainDispute, uint64, error) {
	d, h, err := n.readDisputeAt(ctx, id)
	if err != nil {
		return chainDispute{}, 0, err
	}
	return d, h.Time, nil
}

// readDisputeAt reads the adjudicator's entry of id and the chain's head.
func (n *Node) readDisputeAt(ctx context.Context, id channel.ID) (chainDispute, *types.Header, error) {
	d, err := n.adjCaller.Disputes(&bind.CallOpts{Context: ctx}, id)
	if err != nil {
		return chainDispute{}, nil, fmt.Errorf("read the channel's dispute on the adjudicator: %w", err)
	}
	h, err := n.chain.HeaderByNumber(ctx, nil)
	if err != nil {
		return chainDispute{}, nil, fmt.Errorf("read the chain's head: %w", err)
	}
	return chainDispute{
		Phase: watchtower.Phase(d.Phase), Version: d.Version, Timeout: d.Timeout,
		Registered: d.Version != 0 || d.Timeout != 0 || d.Phase != 0,
	}, h, nil
}

// turnBlocks is how many blocks past the first one after a challenge
// period participant 1 also waits before it concludes (concludeTurn): on
// a chain whose blocks are further apart than concludeGrace, the peer's
// conclusion, sent at the first block past the period, is mined by then.
// On a chain that mines no blocks meanwhile, turnWait bounds the wait.
const (
	turnBlocks = 3
	turnWait   = 30 * time.Second
)

// waitConcludeTurn returns once participant 1 may conclude version of
// channel id (concludeTurn): the channel is concluded (or holds another
// version), or concludeGrace of chain time and turnBlocks blocks (at most
// turnWait) have passed since its challenge period ended without a
// conclusion. Where the chain does not answer, it returns at once (the
// conclusion goes ahead, as without the turn).
func (n *Node) waitConcludeTurn(ctx context.Context, id channel.ID, version uint64) error {
	var past uint64 // the first head seen past the grace
	var pastAt time.Time
	for {
		d, h, err := n.readDisputeAt(ctx, id)
		if err != nil {
			n.log.Warn("read the channel before concluding it", "channel", idHex(id), "err", err)
			return nil
		}
		if d.Phase != watchtower.PhaseRegistered || d.Version != version {
			return nil
		}
		delay := time.Second
		if w := concludeTurn(d, version, h.Time, 1); w != nil {
			delay = min(w.retry, delay)
		} else if past == 0 {
			past, pastAt = h.Number.Uint64(), time.Now()
		} else if h.Number.Uint64() >= past+turnBlocks || time.Since(pastAt) >= turnWait {
			n.log.Info("the peer did not conclude the registered version; concluding it", "channel", idHex(id), "version", version)
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for the peer's turn to conclude: %w", ctx.Err())
		}
	}
}

// awaitError is why a settle waits: another version than the latest stands
// on chain and only its conclusion can follow, or the latest stands and
// the peer's turn to conclude it comes first (peerFirst).
type awaitError struct {
	version, latest, timeout uint64
	// retry is when to look again (the node may conclude then).
	retry time.Duration
	// peerFirst: the latest version stands; the peer concludes it at
	// the end of its challenge period, this node concludeGrace later
	// if the peer has not (concludeTurn).
	peerFirst bool
}

// concludeTurn keeps both parties from concluding the same registered
// version at once when its challenge period ends (both nodes settle a
// registered latest state, say both refunding a channel whose funding
// failed, or the peer of a force close): the two conclusions would land
// in one block and one would revert, its gas lost. The participant with
// index 0 concludes when the period ends; the one with index 1 waits
// concludeGrace more (chain time) and concludes only if nobody has. It
// returns the wait for idx, or nil when the node may settle now.
func concludeTurn(d chainDispute, local, now uint64, idx channel.Index) *awaitError {
	if idx == 0 || !d.Registered || d.Phase != watchtower.PhaseRegistered || d.Version != local {
		return nil
	}
	if now >= d.Timeout+concludeGrace {
		return nil
	}
	return &awaitError{version: d.Version, latest: local, timeout: d.Timeout, peerFirst: true,
		retry: time.Duration(d.Timeout+concludeGrace-now+1) * time.Second}
}

// concludeGrace is how long (chain time) after a stale version's challenge
// period the node leaves its conclusion to the party it favours before
// concluding it itself (two conclusions at once: one reverts).
const concludeGrace = 10

func (e *awaitError) Error() string {
	if e.peerFirst {
		return fmt.Sprintf("version %d, the latest, is registered (its challenge period ends %s): the peer concludes it first, this node %d s later if the peer has not",
			e.version, time.Unix(int64(e.timeout), 0).UTC().Format(time.RFC3339), concludeGrace)
	}
	if e.version > e.latest {
		return fmt.Sprintf("the peer registered version %d, newer than this node's latest version %d: waiting for its conclusion, then withdrawing the share it gives",
			e.version, e.latest)
	}
	return fmt.Sprintf("version %d stands on chain (the latest is %d; its challenge period ended %s): waiting for its conclusion",
		e.version, e.latest, time.Unix(int64(e.timeout), 0).UTC().Format(time.RFC3339))
}

// isAwait tells whether err is an awaitError: a close waits for the
// chain's conclusion instead of failing.
func isAwait(err error) bool {
	var a *awaitError
	return errors.As(err, &a)
}

// reconcile compares the channel with the chain before and after go-perun's
// settle: it returns handled true when the chain's state decided the
// channel (adopted, or waiting for the conclusion with err an awaitError),
// so that go-perun's settle is not tried (again).
func (e *channelEntry) reconcile(ctx context.Context) (handled bool, err error) {
	d, now, err := e.s.n.readDispute(ctx, e.id)
	if err != nil {
		return false, err
	}
	local := e.ch.State().Version
	if wait := concludeTurn(d, local, now, e.idx); wait != nil {
		return true, wait
	}
	switch v := judge(d, local, now); v {
	case verdictAdopt:
		return true, e.adopt(ctx, d, local)
	case verdictAwait:
		wait := &awaitError{version: d.Version, latest: local, timeout: d.Timeout, retry: settleRetry.limit}
		if d.Phase != watchtower.PhaseRegistered || d.Version > local {
			return true, wait // a newer state than ours: its registrant concludes
		}
		if now < d.Timeout+concludeGrace {
			wait.retry = time.Duration(d.Timeout+concludeGrace-now+1) * time.Second
			return true, wait
		}
		// Nobody concluded the stale version: the node does, so that the
		// user's share of it can be withdrawn.
		if err := e.concludeStale(ctx, d); err != nil {
			e.s.n.log.Warn("conclude the stale version that stands", "channel", idHex(e.id), "version", d.Version, "err", err)
			return true, wait
		}
		if d, _, err = e.s.n.readDispute(ctx, e.id); err != nil {
			return true, wait
		}
		if d.Phase == watchtower.PhaseConcluded {
			return true, e.adopt(ctx, d, local)
		}
		return true, wait
	}
	return false, nil
}

// concludeStale concludes the version d that stands on chain past its
// challenge period, from the user's account. The state is read from the
// calldata of its registration (found by the adjudicator's ChannelUpdate
// event of that version).
func (e *channelEntry) concludeStale(ctx context.Context, d chainDispute) error {
	s := e.s
	cb := s.adj.Adjudicator.ContractBackend
	adj, err := adjudicator.NewAdjudicator(s.n.contracts.Adjudicator, cb)
	if err != nil {
		return fmt.Errorf("bind adjudicator: %w", err)
	}
	it, err := adj.FilterChannelUpdate(&bind.FilterOpts{Context: ctx}, [][32]byte{e.id})
	if err != nil {
		return fmt.Errorf("read the channel's events: %w", err)
	}
	var reg common.Hash
	for it.Next() {
		if ev := it.Event; ev.Phase == uint8(watchtower.PhaseRegistered) && ev.Version == d.Version {
			reg = ev.Raw.TxHash
		}
	}
	ierr := it.Error()
	it.Close()
	if ierr != nil {
		return fmt.Errorf("read the channel's events: %w", ierr)
	}
	if reg == (common.Hash{}) {
		return fmt.Errorf("no registration of version %d among the adjudicator's events", d.Version)
	}
	tx, _, err := cb.TransactionByHash(ctx, reg)
	if err != nil {
		return fmt.Errorf("read registration %s: %w", reg.Hex(), err)
	}
	data := tx.Data()
	if len(data) < 4 || s.n.adjABI == nil {
		return fmt.Errorf("registration %s: no adjudicator call", reg.Hex())
	}
	m, err := s.n.adjABI.MethodById(data[:4])
	if err != nil || m.Name != "register" {
		return fmt.Errorf("registration %s was not a direct register call", reg.Hex())
	}
	args, err := m.Inputs.Unpack(data[4:])
	if err != nil || len(args) == 0 {
		return fmt.Errorf("decode registration %s: %v", reg.Hex(), err)
	}
	ss, ok := abi.ConvertType(args[0], new(adjudicator.AdjudicatorSignedState)).(*adjudicator.AdjudicatorSignedState)
	if !ok || ss.State.ChannelID != e.id || ss.State.Version != d.Version {
		return fmt.Errorf("registration %s holds another state", reg.Hex())
	}
	ctx, rec := withRecorder(ctx)
	opts, err := cb.NewTransactor(ctx, adjudicatorGasLimit, s.ethAcc)
	if err != nil {
		return fmt.Errorf("conclude: %w", err)
	}
	// opts carries ctx: the recorder sees the transaction.
	ctl, err := adj.Conclude(opts, ss.Params, ss.State, nil)
	e.addTxs(rec.all())
	if err != nil {
		chain.ResetNonce(s.n.chainID, s.addr)
		return fmt.Errorf("send conclusion: %w", err)
	}
	if _, err := cb.ConfirmTransaction(ctx, ctl, s.ethAcc); err != nil {
		return &ChainError{TxHash: ctl.Hash().Hex(), Err: fmt.Errorf("conclude version %d: %w", d.Version, err)}
	}
	return nil
}

// adopt closes the channel with the outcome the chain concluded (version
// d.Version, not the latest): it withdraws the user's holdings of the
// channel, if any are left, and records the channel closed by dispute with
// the on-chain balances beside the latest off-chain ones.
func (e *channelEntry) adopt(ctx context.Context, d chainDispute, local uint64) error {
	s := e.s
	mine, txHash, err := e.withdrawHoldings(ctx)
	if err != nil {
		return err
	}
	e.mu.Lock()
	latest := Balance{Mine: amount(e.bals[e.idx]), Theirs: amount(e.bals[1-e.idx])}
	total := new(big.Int).Add(e.bals[0], e.bals[1])
	diff := new(big.Int).Sub(mine, e.bals[e.idx])
	theirs := new(big.Int).Sub(total, mine)
	if theirs.Sign() < 0 {
		theirs.SetInt64(0)
	}
	e.bals[e.idx], e.bals[1-e.idx] = new(big.Int).Set(mine), theirs
	e.version = d.Version
	e.outcome = &Outcome{LatestVersion: local, LatestBalance: latest, Difference: diff.String()}
	e.mu.Unlock()
	if txHash != (common.Hash{}) {
		e.addTxs([]string{txHash.Hex()})
	}
	s.n.log.Warn("channel concluded on chain with an older state than the latest: adopted",
		"channel", idHex(e.id), "address", s.addr.Hex(), "onChainVersion", d.Version, "latestVersion", local,
		"withdrawn", mine.String(), "difference", diff.String())
	ev := DisputeEvent{
		ChannelID: idHex(e.id), Event: DisputeWithdrawn, Version: d.Version,
		Amount: mine.String(), Balance: &Balance{Mine: mine.String(), Theirs: theirs.String()},
		Response: fmt.Sprintf("version %d was concluded on chain, not the latest version %d: your share of it is withdrawn (%s against the latest state)",
			d.Version, local, signed(diff)),
	}
	if txHash != (common.Hash{}) {
		ev.TxHash = txHash.Hex()
	}
	e.tellDispute(ev)
	// go-perun's database forgets the channel as its own settle would.
	if err := s.pr.ChannelRemoved(ctx, e.id); err != nil {
		s.n.log.Warn("remove adopted channel from the database", "channel", idHex(e.id), "err", err)
	}
	e.finishClosed("dispute")
	return nil
}

// signed writes a signed amount with its sign.
func signed(x *big.Int) string {
	if x.Sign() > 0 {
		return "+" + x.String()
	}
	return x.String()
}

// tellDispute publishes ev on the session's disputes topic and adds it to
// the user's dispute log.
func (e *channelEntry) tellDispute(ev DisputeEvent) {
	s := e.s
	if ev.Event == DisputeWithdrawn {
		s.n.metrics.Dispute(ev.Event) // the chain's own events are counted by recordDispute
	}
	s.hub.Publish(subscriptions.Disputes, ev)
	key := fmt.Sprintf("%s%020d/%s", disputeKey, time.Now().UnixNano(), ev.ChannelID)
	if err := s.n.putDispute(s.addr, key, disputeRecord{DisputeEvent: ev}); err != nil {
		s.n.log.Error("record dispute event", "address", s.addr.Hex(), "channel", ev.ChannelID, "err", err)
	}
}

// withdrawHoldings withdraws what the asset holder holds for the user in
// the channel and returns the amount with the transaction. Holdings that
// were withdrawn already (a crash after the withdrawal) are found in the
// asset holder's Withdrawn events, with no transaction.
func (e *channelEntry) withdrawHoldings(ctx context.Context) (*big.Int, common.Hash, error) {
	s := e.s
	a := s.n.assetOf(e.ch.State().Assets[0])
	if a == nil {
		return nil, common.Hash{}, errors.New("withdraw: the channel's asset is not configured")
	}
	part := e.ch.Params().Parts[e.idx]
	fid := ethchannel.FundingIDs(e.id, part)[0]
	// Bound through the session's backend, which records and logs the
	// transaction.
	cb := s.adj.Adjudicator.ContractBackend
	ah, err := assetholder.NewAssetholder(a.holder, cb)
	if err != nil {
		return nil, common.Hash{}, fmt.Errorf("bind asset holder: %w", err)
	}
	held, err := ah.Holdings(&bind.CallOpts{Context: ctx}, fid)
	if err != nil {
		return nil, common.Hash{}, fmt.Errorf("read holdings: %w", err)
	}
	if held.Sign() == 0 {
		got, err := withdrawnBefore(ctx, ah, fid)
		return got, common.Hash{}, err
	}
	auth := assetholder.AssetHolderWithdrawalAuth{
		ChannelID:   e.id,
		Participant: ethwallet.AsChannelParticipant(part),
		Receiver:    s.addr,
		Amount:      held,
	}
	enc, err := encodeWithdrawalAuth(auth)
	if err != nil {
		return nil, common.Hash{}, err
	}
	acc, err := s.wallet.Unlock(ethwallet.AsWalletAddr(s.addr))
	if err != nil {
		return nil, common.Hash{}, fmt.Errorf("unlock account: %w", err)
	}
	sig, err := acc.SignData(enc)
	if err != nil {
		return nil, common.Hash{}, fmt.Errorf("sign withdrawal: %w", err)
	}
	opts, err := cb.NewTransactor(ctx, adjudicatorGasLimit, s.ethAcc)
	if err != nil {
		return nil, common.Hash{}, fmt.Errorf("withdraw: %w", err)
	}
	tx, err := ah.Withdraw(opts, auth, sig)
	if err != nil {
		chain.ResetNonce(s.n.chainID, s.addr)
		return nil, common.Hash{}, fmt.Errorf("send withdrawal: %w", err)
	}
	// The session's backend logs the transaction and its outcome.
	if _, err := cb.ConfirmTransaction(ctx, tx, s.ethAcc); err != nil {
		return nil, tx.Hash(), &ChainError{TxHash: tx.Hash().Hex(), Err: fmt.Errorf("withdraw the concluded share: %w", err)}
	}
	return held, tx.Hash(), nil
}

// withdrawnBefore sums the asset holder's Withdrawn events of fid.
func withdrawnBefore(ctx context.Context, ah *assetholder.Assetholder, fid [32]byte) (*big.Int, error) {
	it, err := ah.FilterWithdrawn(&bind.FilterOpts{Context: ctx}, [][32]byte{fid})
	if err != nil {
		return nil, fmt.Errorf("read past withdrawals: %w", err)
	}
	defer it.Close()
	sum := new(big.Int)
	for it.Next() {
		sum.Add(sum, it.Event.Amount)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("read past withdrawals: %w", err)
	}
	return sum, nil
}

// withdrawalAuthArgs is the ABI encoding of the asset holder's
// WithdrawalAuth, which the participant signs.
var withdrawalAuthArgs = func() abi.Arguments {
	t, err := abi.NewType("tuple", "", []abi.ArgumentMarshaling{
		{Name: "channelID", Type: "bytes32"},
		{Name: "participant", Type: "tuple", Components: []abi.ArgumentMarshaling{
			{Name: "ethAddress", Type: "address"},
			{Name: "ccAddress", Type: "bytes"},
		}},
		{Name: "receiver", Type: "address"},
		{Name: "amount", Type: "uint256"},
	})
	if err != nil {
		panic(err) // a constant type
	}
	return abi.Arguments{{Type: t}}
}()

func encodeWithdrawalAuth(a assetholder.AssetHolderWithdrawalAuth) ([]byte, error) {
	enc, err := withdrawalAuthArgs.Pack(a)
	if err != nil {
		return nil, fmt.Errorf("encode withdrawal authorisation: %w", err)
	}
	return enc, nil
}
