package node

import (
	"context"
	"log/slog"
	"sync"
	"time"

	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	"perun.network/go-perun/channel"
)

// resilientAdjudicator hands out adjudicator subscriptions that subscribe
// again when the chain connection breaks, so the short-lived subscriptions
// of go-perun's settle path (waiting for a registration, a conclusion)
// survive a chain restart; watching itself is the node's watchtower's. A new subscription
// reads past events first, so nothing that happened meanwhile is missed;
// an event may be delivered twice, which the watcher and the node accept.
type resilientAdjudicator struct {
	*ethchannel.Adjudicator
	log *slog.Logger
	// turn waits until participant 1 may conclude a registered version
	// (Node.waitConcludeTurn); nil: no wait.
	turn func(ctx context.Context, id channel.ID, version uint64) error
}

// Withdraw concludes the channel (if needed) and withdraws the user's
// share. Participant 1 of a channel settled on a non-final state first
// leaves the conclusion to participant 0 (concludeTurn): two conclusions
// in one block, one of them reverted, cost one party its gas.
func (a *resilientAdjudicator) Withdraw(ctx context.Context, req channel.AdjudicatorReq, subStates channel.StateMap) error {
	if a.turn != nil && req.Idx == 1 && !req.Tx.IsFinal {
		if err := a.turn(ctx, req.Tx.ID, req.Tx.Version); err != nil {
			return err
		}
	}
	return a.Adjudicator.Withdraw(ctx, req, subStates)
}

var _ channel.RegisterSubscriber = (*resilientAdjudicator)(nil)

// Subscribe returns a subscription to the channel's adjudicator events.
func (a *resilientAdjudicator) Subscribe(ctx context.Context, id channel.ID) (channel.AdjudicatorSubscription, error) {
	inner, err := a.Adjudicator.Subscribe(ctx, id)
	if err != nil {
		return nil, err
	}
	return &resilientSub{a: a, ctx: ctx, id: id, inner: inner, closed: make(chan struct{})}, nil
}

type resilientSub struct {
	a      *resilientAdjudicator
	ctx    context.Context
	id     channel.ID
	mu     sync.Mutex
	inner  channel.AdjudicatorSubscription
	err    error
	closed chan struct{}
	once   sync.Once
}

func (s *resilientSub) current() channel.AdjudicatorSubscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inner
}

func (s *resilientSub) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return s.ctx.Err() != nil
	}
}

// Next returns the next event, or nil once the subscription is closed.
func (s *resilientSub) Next() channel.AdjudicatorEvent {
	for {
		inner := s.current()
		if e := inner.Next(); e != nil {
			return e
		}
		if s.isClosed() {
			return nil
		}
		err := inner.Err()
		if err == nil {
			return nil
		}
		s.a.log.Warn("adjudicator subscription broke; subscribing again", "channel", idHex(s.id), "err", err)
		backoff := 200 * time.Millisecond
		for {
			select {
			case <-s.closed:
				return nil
			case <-s.ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			next, err := s.a.Adjudicator.Subscribe(s.ctx, s.id)
			if err == nil {
				s.mu.Lock()
				s.inner = next
				s.mu.Unlock()
				if s.isClosed() {
					_ = next.Close()
					return nil
				}
				break
			}
			if backoff < 5*time.Second {
				backoff *= 2
			}
		}
	}
}

// Err returns the error that ended the subscription, if any.
func (s *resilientSub) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription.
func (s *resilientSub) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = s.current().Close()
	})
	return err
}
