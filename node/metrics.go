package node

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// nodeCollector reads the node's state when /metrics is scraped: the open
// sessions, their channels by state and asset, and the channels the
// watchtower watches (every user's, logged in or not).
type nodeCollector struct {
	n                                                *Node
	sessions, channels, watched, headAge, reconnects *prometheus.Desc
}

// reconnecter is a chain connection that counts its reconnects
// (chain.Reconnecting).
type reconnecter interface{ Reconnects() uint64 }

func newNodeCollector(n *Node) nodeCollector {
	return nodeCollector{n: n,
		sessions:   prometheus.NewDesc("perund_sessions_open", "User sessions open (users logged in).", nil, nil),
		channels:   prometheus.NewDesc("perund_channels", "Channels of the logged-in users that are not closed, by state and asset (a channel between two users of the node counts for each).", []string{"state", "asset"}, nil),
		watched:    prometheus.NewDesc("perund_channels_watched", "Channels the node's watchtower watches on chain, for every user whether logged in or not.", nil, nil),
		reconnects: prometheus.NewDesc("perund_chain_reconnects_total", "Times the connection to the chain was lost and made again (a ws:// chain).", nil, nil),
		headAge:    prometheus.NewDesc("perund_chain_head_age_seconds", "Age of the chain's newest block, read at the scrape (how far the chain lags behind the wall clock); absent when the chain does not answer.", nil, nil),
	}
}

// Describe sends the descriptions of the node's metrics.
func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sessions
	ch <- c.channels
	ch <- c.watched
	ch <- c.headAge
	ch <- c.reconnects
}

// Collect reads the node's sessions and their channels.
func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	c.n.mu.Lock()
	sessions := make([]*Session, 0, len(c.n.sessions))
	for _, s := range c.n.sessions {
		sessions = append(sessions, s)
	}
	c.n.mu.Unlock()
	type key struct{ state, asset string }
	counts := map[key]int{}
	for _, s := range sessions {
		s.mu.Lock()
		entries := make([]*channelEntry, 0, len(s.channels))
		for _, e := range s.channels {
			entries = append(entries, e)
		}
		s.mu.Unlock()
		for _, e := range entries {
			ci := e.info()
			if ci.State != StateClosed {
				counts[key{ci.State, ci.Asset}]++
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(len(sessions)))
	for k, v := range counts {
		ch <- prometheus.MustNewConstMetric(c.channels, prometheus.GaugeValue, float64(v), k.state, k.asset)
	}
	if c.n.tower != nil {
		ch <- prometheus.MustNewConstMetric(c.watched, prometheus.GaugeValue, float64(c.n.tower.Stats().Watched))
	}
	if r, ok := c.n.chain.(reconnecter); ok {
		ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(r.Reconnects()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if h, err := c.n.chain.HeaderByNumber(ctx, nil); err == nil {
		age := time.Since(time.Unix(int64(h.Time), 0))
		ch <- prometheus.MustNewConstMetric(c.headAge, prometheus.GaugeValue, age.Seconds())
	}
}

// errorKind names an error of a payment for the metrics' result label.
func errorKind(err error) string {
	var (
		ins *InsufficientFundsError
		pu  *PeerUnreachableError
		pr  *PeerRejectedError
		to  *TimeoutError
		se  *StateError
		cf  *ConflictError
		nf  *NotFoundError
	)
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &ins):
		return "insufficient_funds"
	case errors.As(err, &pu):
		return "peer_unreachable"
	case errors.As(err, &pr):
		return "rejected"
	case errors.As(err, &to):
		return "timeout"
	case errors.As(err, &se):
		return "wrong_state"
	case errors.As(err, &cf):
		return "busy"
	case errors.As(err, &nf):
		return "not_found"
	}
	return "error"
}
