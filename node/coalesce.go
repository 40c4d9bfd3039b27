package node

import (
	"context"
	"math/big"

	"perun.network/go-perun/channel"
)

// Coalesced payments: the channel_send calls of one channel that wait
// while an update is in flight are carried by the next update together.
// Every call puts its payment in the channel's queue and then waits either
// for its answer or for the channel's operation slot; whoever gets the
// slot takes the whole queue into one go-perun update (flat combining), so
// one sender alone pays exactly as before and a hundred concurrent senders
// share a few updates. A payment is answered only after the update that
// carries it is signed by both parties and stored (go-perun's Update
// returns then), with that update's version. A payment the balance cannot
// cover, after the payments before it in the queue, fails alone with
// insufficient funds; the others go through.

// queuedPay is one channel_send waiting in its channel's queue.
type queuedPay struct {
	amt *big.Int
	// done receives the payment's answer (buffered: the combiner never
	// waits for a caller).
	done chan payResult
	// taken: a combiner took it into an update (guarded by the entry's mu);
	// a taken payment is always answered.
	taken bool
}

type payResult struct {
	info ChannelInfo
	err  error
}

// pay sends amt on the channel, coalesced with the payments of other
// callers that wait at the same time.
func (e *channelEntry) pay(ctx context.Context, amt *big.Int) (ChannelInfo, error) {
	q := &queuedPay{amt: amt, done: make(chan payResult, 1)}
	e.mu.Lock()
	e.payQ = append(e.payQ, q)
	e.mu.Unlock()
	select {
	case r := <-q.done:
		return r.info, r.err
	case e.ops <- struct{}{}:
		e.combine()
		e.release()
		// Answered: by this combine, or by an earlier combiner that took it
		// before this caller got the slot.
		r := <-q.done
		return r.info, r.err
	case <-ctx.Done():
		e.mu.Lock()
		if !q.taken {
			e.dropQueued(q)
			e.mu.Unlock()
			return ChannelInfo{}, &ConflictError{Msg: "channel busy: another operation is in progress"}
		}
		e.mu.Unlock()
		// In an update already: its answer comes when the update ends
		// (bounded by the update's own timeout).
		r := <-q.done
		return r.info, r.err
	}
}

// dropQueued removes q from the queue; e.mu is held.
func (e *channelEntry) dropQueued(q *queuedPay) {
	for i, p := range e.payQ {
		if p == q {
			e.payQ = append(e.payQ[:i], e.payQ[i+1:]...)
			return
		}
	}
}

// combine takes every queued payment into one update and answers each. The
// caller holds the operation slot.
func (e *channelEntry) combine() {
	e.mu.Lock()
	batch := e.payQ
	e.payQ = nil
	for _, q := range batch {
		q.taken = true
	}
	st := e.state
	e.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	answer := func(q *queuedPay, info ChannelInfo, err error) { q.done <- payResult{info: info, err: err} }
	if st != StateOpen {
		for _, q := range batch {
			answer(q, ChannelInfo{}, &StateError{State: st, Msg: "channel is not open"})
		}
		return
	}
	from, to := e.idx, 1-e.idx
	// Which payments the balance covers, in queue order. Decided from the
	// state go-perun hands the update (each attempt of it: a collision
	// retries with the peer's newer state), and before the update too, so
	// that an update nobody's payment fits into is never started (failing
	// inside it drops the peer connection).
	var included []bool
	var short []*big.Int // the balance left when a payment did not fit
	pick := func(bal *big.Int) *big.Int {
		included, short = make([]bool, len(batch)), make([]*big.Int, len(batch))
		left, total := new(big.Int).Set(bal), new(big.Int)
		for i, q := range batch {
			if left.Cmp(q.amt) < 0 {
				short[i] = new(big.Int).Set(left)
				continue
			}
			included[i] = true
			left.Sub(left, q.amt)
			total.Add(total, q.amt)
		}
		return total
	}
	var err error
	if pick(e.mine()).Sign() > 0 {
		// The session's context, not a caller's: the update carries other
		// callers' payments too, and ends with the session or its timeout.
		err = e.update(e.s.tasks.ctx, func(st *channel.State) error {
			bal := st.Balances[0][from]
			total := pick(bal)
			if total.Sign() == 0 {
				return insufficientInChannel(true, bal, batch[0].amt)
			}
			st.Balances[0][from] = new(big.Int).Sub(bal, total)
			st.Balances[0][to] = new(big.Int).Add(st.Balances[0][to], total)
			return nil
		})
	}
	var info ChannelInfo
	if err == nil {
		info = e.info()
	}
	for i, q := range batch {
		switch {
		case !included[i]:
			answer(q, ChannelInfo{}, insufficientInChannel(true, short[i], q.amt))
		case err != nil:
			answer(q, ChannelInfo{}, err)
		default:
			answer(q, info, nil)
		}
	}
}
