package chain

import (
	"sync"

	"github.com/ethereum/go-ethereum"
)

// relay subscribes through a channel of its own and forwards to out.
//
// go-ethereum 1.17's RPC client keeps every subscription it ever made in
// its handler (handler.clientSubs is emptied only when the connection
// closes), with the channel it was given: perun-eth-backend subscribes to
// logs and heads with 128-slot channels for every deposit, every
// registration and every timeout, so a long-lived connection kept about
// 46 KiB per subscription for ever (462 MiB after 5,000 channels were
// opened, the largest item of the node's heap). Through relay the client
// keeps only its own bookkeeping and an unbuffered channel; the caller's
// channel is released at Unsubscribe.
func relay[T any](subscribe func(chan<- T) (ethereum.Subscription, error), out chan<- T) (ethereum.Subscription, error) {
	in := make(chan T)
	inner, err := subscribe(in)
	if err != nil {
		return nil, err
	}
	s := &relaySub{inner: inner, errc: make(chan error, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.errc)
		for {
			select {
			case v := <-in:
				select {
				case out <- v:
				case <-s.quit:
					return
				}
			case err, ok := <-inner.Err():
				if ok && err != nil {
					s.errc <- err
				}
				return
			case <-s.quit:
				return
			}
		}
	}()
	return s, nil
}

// relaySub is a subscription made through relay.
type relaySub struct {
	inner ethereum.Subscription
	errc  chan error
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// Unsubscribe ends the subscription and its forwarding goroutine.
func (s *relaySub) Unsubscribe() {
	s.once.Do(func() {
		s.inner.Unsubscribe()
		close(s.quit)
		<-s.done
	})
}

// Err delivers the error that ended the subscription; it is closed at
// Unsubscribe.
func (s *relaySub) Err() <-chan error { return s.errc }
