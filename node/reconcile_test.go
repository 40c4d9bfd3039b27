package node

import (
	"testing"
	"time"

	pkgerrors "github.com/pkg/errors"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/client"

	"github.com/perund/perund/watchtower"
)

// TestJudge: what the node does with a channel for each on-chain entry,
// the latest local version being 5, at chain time 100.
func TestJudge(t *testing.T) {
	t.Parallel()
	const local, now = 5, 100
	for _, tc := range []struct {
		name string
		d    chainDispute
		want verdict
	}{
		{"nothing registered", chainDispute{}, verdictSettle},
		{"the latest registered", chainDispute{Registered: true, Phase: watchtower.PhaseRegistered, Version: 5, Timeout: 200}, verdictSettle},
		{"the latest concluded", chainDispute{Registered: true, Phase: watchtower.PhaseConcluded, Version: 5, Timeout: 50}, verdictSettle},
		{"stale, still refutable", chainDispute{Registered: true, Phase: watchtower.PhaseRegistered, Version: 2, Timeout: 200}, verdictSettle},
		{"stale, challenge over", chainDispute{Registered: true, Phase: watchtower.PhaseRegistered, Version: 2, Timeout: 100}, verdictAwait},
		{"newer than ours, still running", chainDispute{Registered: true, Phase: watchtower.PhaseRegistered, Version: 9, Timeout: 200}, verdictAwait},
		{"stale concluded", chainDispute{Registered: true, Phase: watchtower.PhaseConcluded, Version: 2, Timeout: 50}, verdictAdopt},
		{"newer concluded", chainDispute{Registered: true, Phase: watchtower.PhaseConcluded, Version: 9, Timeout: 50}, verdictAdopt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want.String(), judge(tc.d, local, now).String())
		})
	}
}

// TestConcludeTurn: of two parties settling the same registered latest
// version, participant 0 concludes when the challenge period ends and
// participant 1 waits concludeGrace (chain time) more; nothing else waits.
func TestConcludeTurn(t *testing.T) {
	t.Parallel()
	const local = 5
	registered := chainDispute{Registered: true, Phase: watchtower.PhaseRegistered, Version: local, Timeout: 100}
	for _, tc := range []struct {
		name      string
		d         chainDispute
		now       uint64
		idx       channel.Index
		wantRetry time.Duration // 0: no wait
	}{
		{"participant 0 concludes at the end", registered, 90, 0, 0},
		{"participant 1 waits before the end", registered, 90, 1, (10 + concludeGrace + 1) * time.Second},
		{"participant 1 waits at the end", registered, 100, 1, (concludeGrace + 1) * time.Second},
		{"participant 1 in the grace", registered, 100 + concludeGrace - 1, 1, 2 * time.Second},
		{"participant 1 after the grace", registered, 100 + concludeGrace, 1, 0},
		{"nothing registered", chainDispute{}, 90, 1, 0},
		{"concluded", chainDispute{Registered: true, Phase: watchtower.PhaseConcluded, Version: local, Timeout: 100}, 90, 1, 0},
		{"another version (judge decides)", chainDispute{Registered: true, Phase: watchtower.PhaseRegistered, Version: 2, Timeout: 100}, 90, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := concludeTurn(tc.d, local, tc.now, tc.idx)
			if tc.wantRetry == 0 {
				require.Nil(t, w)
				return
			}
			require.NotNil(t, w)
			require.True(t, w.peerFirst)
			require.Equal(t, tc.wantRetry, w.retry)
			require.True(t, isAwait(w))
			require.Contains(t, w.Error(), "the peer concludes it first")
		})
	}
}

// TestLateDeposit: a funding timeout names whose deposit did not arrive,
// from the user's side, and the time the opening really took.
func TestLateDeposit(t *testing.T) {
	t.Parallel()
	late := func(peers ...channel.Index) channel.FundingTimeoutError {
		return channel.FundingTimeoutError{Errors: []*channel.AssetFundingError{{Asset: 0, TimedOutPeers: peers}}}
	}
	for _, tc := range []struct {
		name string
		fto  channel.FundingTimeoutError
		idx  channel.Index
		want string
	}{
		{"the proposer waits for the peer", late(1), 0, "waiting for bob's deposit (the funding period is 60 s of block time) timed out after 5.2s"},
		{"the responder waits for the proposer", late(0), 1, "waiting for bob's deposit (the funding period is 60 s of block time) timed out after 5.2s"},
		{"the user's own deposit is missing", late(1), 1, "waiting for your deposit (the funding period is 60 s of block time) timed out after 5.2s"},
		{"neither arrived", late(0, 1), 0, "waiting for both deposits (the funding period is 60 s of block time) timed out after 5.2s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := lateDeposit(lateParties(tc.fto, tc.idx), openAttempt{peer: "bob", idx: tc.idx, challenge: 60, elapsed: 5213 * time.Millisecond})
			require.EqualError(t, err, tc.want)
		})
	}
}

// TestLateDepositFromChain: once a funding failed, the chain's holdings
// name the missing deposits. A deposit mined as the funding period ended
// is in, though the funder had not seen its event (it named both) or had
// not seen it confirmed (its wait timed out): the user hears that the
// peer's deposit is missing, not that hers failed. Where the chain did not
// answer, the funder's view stands.
func TestLateDepositFromChain(t *testing.T) {
	t.Parallel()
	bothLate := &client.ChannelFundingError{Err: pkgerrors.WithMessage(
		channel.NewFundingTimeoutError([]*channel.AssetFundingError{{Asset: 0, TimedOutPeers: []channel.Index{0, 1}}}),
		"waiting for peer funding")}
	confirmCut := &client.ChannelFundingError{Err: pkgerrors.WithMessage(
		client.NewTxTimedoutError("Fund", "0x01", "timed out waiting for tx to be mined"), "error while funding channel")}
	for _, tc := range []struct {
		name     string
		err      error
		unfunded *lateness
		want     string
	}{
		{"the funder missed the user's deposit", bothLate, &lateness{theirs: true}, "waiting for bob's deposit"},
		{"the chain did not answer", bothLate, nil, "waiting for both deposits"},
		{"the chain lacks both", bothLate, &lateness{ours: true, theirs: true}, "waiting for both deposits"},
		{"the user's confirmation was cut short", confirmCut, &lateness{theirs: true}, "waiting for bob's deposit"},
		{"both came in as the period ended", bothLate, &lateness{}, "both are on chain"},
		{"both are in, the user's confirmation cut short", confirmCut, &lateness{}, "both are on chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Session{}
			err := s.mapOpenErr(tc.err, openAttempt{peer: "bob", idx: 0, challenge: 3, unfunded: tc.unfunded}, &txRecorder{})
			var te *TimeoutError
			require.ErrorAs(t, err, &te)
			require.Contains(t, te.What, tc.want)
		})
	}
}
