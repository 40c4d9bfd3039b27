package perundtest

import (
	"context"
	"fmt"
	"time"

	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
)

// Proposal is the kind AcceptNext takes for a channel proposal; the kinds
// of updates are node.KindPayment, node.KindRequest and node.KindClose.
const Proposal = "proposal"

// AcceptNext is a responder with a deadline: it subscribes now, and in a
// goroutine accepts the next pending proposal (kind Proposal) or update of
// kind that s gets within d (or before ctx ends). The returned channel
// gets nil once accepted, else the error; nothing in it fails the test
// (take the outcome with Recv on the test goroutine).
func AcceptNext(ctx context.Context, s *node.Session, kind string, d time.Duration) (<-chan error, error) {
	topic := subscriptions.Updates
	if kind == Proposal {
		topic = subscriptions.Proposals
	}
	sub, err := s.Hub().Subscribe(topic)
	if err != nil {
		return nil, err
	}
	res := make(chan error, 1)
	go func() {
		defer s.Hub().Unsubscribe(sub.ID())
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		for {
			select {
			case ev, ok := <-sub.Events():
				if !ok {
					res <- fmt.Errorf("accept the next %s: subscription ended: %v", kind, sub.Err())
					return
				}
				switch ev := ev.(type) {
				case node.ProposalInfo:
					if ev.Status == node.StatusPending {
						_, err := s.RespondProposal(ctx, ev.ProposalID, true, "")
						res <- err
						return
					}
				case node.UpdateInfo:
					if ev.Status == node.StatusPending && ev.Kind == kind {
						_, err := s.RespondUpdate(ctx, ev.UpdateID, true, "")
						res <- err
						return
					}
				}
			case <-ctx.Done():
				res <- fmt.Errorf("accept the next %s: none within %s", kind, d)
				return
			}
		}
	}()
	return res, nil
}
