package node

import (
	"context"
	"errors"
	"time"

	"perun.network/go-perun/channel"
)

// Two parties must never update one channel at the same time: go-perun
// then deadlocks both until their contexts end and may leave them on
// different states of the same version. perund resolves a collision by a
// fixed priority: the participant with index 0 (the proposer) wins.
//
//   - Every incoming update proposal is seen on arrival (observingBus),
//     before go-perun queues it behind the channel lock.
//   - Index 1, seeing the peer propose the version it is proposing itself,
//     cancels its own update (the peer cannot accept it: its channel is
//     locked by its own update), lets the peer's update through and retries.
//   - Index 0 rejects an incoming proposal of a version that arrived while it
//     was proposing that same version itself, in case its own update failed
//     and go-perun would otherwise hand the stale proposal to the handler.

// yieldWindow bounds how long the winner of a collision waits for the
// loser's retry before it updates again.
const yieldWindow = 200 * time.Millisecond

// collisionWait bounds how long the loser of a collision waits for the
// winner's update to arrive before it retries its own.
const collisionWait = 2 * time.Second

var (
	errCollision     = errors.New("update collision: the peer updates the channel")
	errUpdateTimeout = errors.New("update timed out")
)

// collisions tracks local update attempts and incoming proposals of one
// channel. Guarded by the channel entry's mutex.
type collisions struct {
	// yieldUntil, on index 0, makes the next local update wait briefly for
	// the peer's retry after a collision, so the peer is not starved.
	yieldUntil time.Time
	cur        *attemptToken
	attempts   map[uint64][]*attemptToken
	arrived    map[uint64]time.Time
}

type attemptToken struct {
	version    uint64
	start, end time.Time
	cancel     context.CancelCauseFunc
}

func newCollisions() collisions {
	return collisions{attempts: map[uint64][]*attemptToken{}, arrived: map[uint64]time.Time{}}
}

func (c *collisions) begin(cancel context.CancelCauseFunc) *attemptToken {
	t := &attemptToken{start: time.Now(), cancel: cancel}
	c.cur = t
	return t
}

// proposing records the version the local update proposes; index 1 backs
// off at once if the peer's proposal of that version is already here.
func (c *collisions) proposing(t *attemptToken, v uint64, idx channel.Index) {
	t.version = v
	c.attempts[v] = append(c.attempts[v], t)
	if at, ok := c.arrived[v]; ok && time.Since(at) < 5*time.Second {
		if idx == 1 {
			t.cancel(errCollision)
		} else {
			c.yieldUntil = time.Now().Add(yieldWindow)
		}
	}
}

func (c *collisions) end(t *attemptToken) {
	t.end = time.Now()
	if c.cur == t {
		c.cur = nil
	}
}

// arrive records an incoming proposal of version v.
func (c *collisions) arrive(v uint64, idx channel.Index) {
	c.arrived[v] = time.Now()
	if c.cur != nil && c.cur.version == v {
		if idx == 1 {
			c.cur.cancel(errCollision)
		} else {
			c.yieldUntil = time.Now().Add(yieldWindow)
		}
	}
}

// mustReject tells index 0's handler to reject an incoming proposal of
// version v that collided with its own attempt.
func (c *collisions) mustReject(v uint64, idx channel.Index) bool {
	at, ok := c.arrived[v]
	delete(c.arrived, v)
	if idx != 0 || !ok {
		return false
	}
	for _, t := range c.attempts[v] {
		if !at.Before(t.start) && (t.end.IsZero() || !at.After(t.end)) {
			return true
		}
	}
	return false
}

// prune forgets everything at or below the current version.
func (c *collisions) prune(cur uint64) {
	for v := range c.attempts {
		if v <= cur {
			delete(c.attempts, v)
		}
	}
	for v := range c.arrived {
		if v <= cur {
			delete(c.arrived, v)
		}
	}
}

// observeIncomingUpdate is called by the bus for every update proposal.
func (s *Session) observeIncomingUpdate(id [32]byte, version uint64) {
	s.mu.Lock()
	e, ok := s.channels[id]
	s.mu.Unlock()
	if !ok {
		return
	}
	e.mu.Lock()
	e.col.arrive(version, e.idx)
	e.mu.Unlock()
}
