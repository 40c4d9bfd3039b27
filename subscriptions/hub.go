// Package subscriptions is a per-session event hub: topics, subscribers with
// bounded buffers, and publishing that never blocks the node.
package subscriptions

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// Topic names an event stream.
type Topic string

// The topics of the API.
const (
	Proposals Topic = "proposals"
	Updates   Topic = "updates"
	Channels  Topic = "channels"
	Disputes  Topic = "disputes"
)

// ErrUnknownTopic is returned by Subscribe for a topic not in Topics.
var ErrUnknownTopic = errors.New("unknown topic")

// ErrOverflow is the reason a subscription ends when its reader falls behind
// by more than its buffer.
var ErrOverflow = errors.New("subscriber too slow: buffer overflow")

// Topics lists the valid topics.
func Topics() []Topic { return []Topic{Proposals, Updates, Channels, Disputes} }

// ParseTopic validates a topic name.
func ParseTopic(s string) (Topic, error) {
	for _, t := range Topics() {
		if string(t) == s {
			return t, nil
		}
	}
	return "", fmt.Errorf("%q: %w (want proposals, updates, channels or disputes)", s, ErrUnknownTopic)
}

// DefaultBuffer is the number of events a subscriber may lag behind.
const DefaultBuffer = 1024

// Hub fans events out to subscribers. It is safe for concurrent use.
type Hub struct {
	buffer int
	mu     sync.Mutex
	subs   map[string]*Subscription
	// held are events for the next subscriber of their topic (Hold).
	held   map[Topic][]any
	closed bool
}

// NewHub returns a hub whose subscribers buffer up to buffer events.
func NewHub(buffer int) *Hub {
	if buffer < 1 {
		buffer = DefaultBuffer
	}
	return &Hub{buffer: buffer, subs: map[string]*Subscription{}}
}

// Subscription receives the events of one topic until it ends.
type Subscription struct {
	id     string
	topic  Topic
	events chan any
	hub    *Hub
	once   sync.Once
	err    error
	// shared: the events come as *Event (SubscribeShared).
	shared bool
}

// Event is a published event as the subscriptions of SubscribeShared
// receive it: one value for all of them, whose JSON encoding is made once.
type Event struct {
	// Value is the published event.
	Value any
	once  sync.Once
	data  []byte
	err   error
}

// JSON returns the encoding of Value (json.Marshal), made by the first
// caller.
func (e *Event) JSON() ([]byte, error) {
	e.once.Do(func() {
		e.data, e.err = json.Marshal(e.Value)
		if e.err != nil {
			e.err = fmt.Errorf("encode event %T: %w", e.Value, e.err)
		}
	})
	return e.data, e.err
}

// ID returns the subscription id: 0x followed by 32 hex digits.
func (s *Subscription) ID() string { return s.id }

// Topic returns the subscribed topic.
func (s *Subscription) Topic() Topic { return s.topic }

// Events delivers the events in publication order. It is closed when the
// subscription ends.
func (s *Subscription) Events() <-chan any { return s.events }

// Err tells why the subscription ended: nil after Unsubscribe or Close,
// ErrOverflow when the reader fell behind. Valid after Events is closed.
func (s *Subscription) Err() error { return s.err }

// Subscribe starts a subscription to topic.
func (h *Hub) Subscribe(topic Topic) (*Subscription, error) {
	return h.subscribe(topic, false)
}

// SubscribeShared starts a subscription to topic whose Events are
// *Event: every such subscription of the hub receives the same *Event for
// one publication, so that its JSON encoding is made once for all.
func (h *Hub) SubscribeShared(topic Topic) (*Subscription, error) {
	return h.subscribe(topic, true)
}

func (h *Hub) subscribe(topic Topic, shared bool) (*Subscription, error) {
	if _, err := ParseTopic(string(topic)); err != nil {
		return nil, err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("subscription id: %w", err)
	}
	s := &Subscription{id: "0x" + hex.EncodeToString(b[:]), topic: topic, events: make(chan any, h.buffer), hub: h, shared: shared}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(s.events)
		return s, nil
	}
	h.subs[s.id] = s
	for _, ev := range h.held[topic] {
		if shared {
			ev = &Event{Value: ev}
		}
		select {
		case s.events <- ev:
		default:
		}
	}
	delete(h.held, topic)
	return s, nil
}

// Hold keeps ev for the next subscriber of topic, which receives the held
// events first (events that happened before anybody could subscribe, such
// as those of a user's channels while the user was logged out). At most
// half the buffer is held, so that the subscriber has room for live
// events; older events are dropped first.
func (h *Hub) Hold(topic Topic, ev any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held == nil {
		h.held = map[Topic][]any{}
	}
	limit := max(h.buffer/2, 1)
	l := append(h.held[topic], ev)
	if len(l) > limit {
		l = l[len(l)-limit:]
	}
	h.held[topic] = l
}

// Unsubscribe ends the subscription id and reports whether it existed.
func (h *Hub) Unsubscribe(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.subs[id]
	if ok {
		h.end(s, nil)
	}
	return ok
}

// Has reports whether id is an active subscription of this hub.
func (h *Hub) Has(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.subs[id]
	return ok
}

// end removes s; h.mu must be held.
func (h *Hub) end(s *Subscription, err error) {
	s.once.Do(func() {
		delete(h.subs, s.id)
		s.err = err
		close(s.events)
	})
}

// Publish delivers ev to every subscriber of topic without blocking (the
// subscribers of SubscribeShared all get one *Event holding it). A
// subscriber whose buffer is full is ended with ErrOverflow.
func (h *Hub) Publish(topic Topic, ev any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var shared *Event
	for _, s := range h.subs {
		if s.topic != topic {
			continue
		}
		v := ev
		if s.shared {
			if shared == nil {
				shared = &Event{Value: ev}
			}
			v = shared
		}
		select {
		case s.events <- v:
		default:
			h.end(s, ErrOverflow)
		}
	}
}

// Subscribers counts the active subscriptions of topic.
func (h *Hub) Subscribers(topic Topic) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, s := range h.subs {
		if s.topic == topic {
			n++
		}
	}
	return n
}

// Close ends all subscriptions; later subscriptions end at once.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, s := range h.subs {
		h.end(s, nil)
	}
}
