// Package metrics holds perund's Prometheus metrics: one registry per node,
// served in the Prometheus text format at /metrics. The node, the API
// server and the chain connection update them; collectors that read the
// node's state at scrape time (channels by state) register beside them.
//
// Names follow Prometheus conventions: counters end in _total, durations
// are histograms in seconds.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the metrics of one node. A nil *Metrics records nothing, so
// that code paths without metrics (tests, tools) need no checks.
type Metrics struct {
	reg *prometheus.Registry

	dropped    prometheus.Counter
	rpcCalls   *prometheus.CounterVec
	rpcSeconds *prometheus.HistogramVec
	payments   *prometheus.CounterVec
	paySeconds prometheus.Histogram
	proposals  *prometheus.CounterVec
	updates    *prometheus.CounterVec
	disputes   *prometheus.CounterVec
	txs        *prometheus.CounterVec
	gas        *prometheus.CounterVec
}

// New returns the metrics of a node, with Go's runtime and process
// metrics beside them.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) prometheus.Collector { reg.MustRegister(c); return c }
	latency := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}
	m := &Metrics{
		reg: reg,
		dropped: f(prometheus.NewCounter(prometheus.CounterOpts{Name: "perund_rpc_dropped_subscribers_total",
			Help: "Subscriptions ended because their connection did not read its notifications fast enough."})).(prometheus.Counter),
		rpcCalls: f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "perund_rpc_calls_total",
			Help: "API calls by method and result code (0: a result)."}, []string{"method", "code"})).(*prometheus.CounterVec),
		rpcSeconds: f(prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "perund_rpc_call_duration_seconds",
			Help: "Duration of API calls by method.", Buckets: latency}, []string{"method"})).(*prometheus.HistogramVec),
		payments: f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "perund_payments_total",
			Help: "Payments sent by users (channel_send) by asset and result (ok, or the error's kind)."}, []string{"asset", "result"})).(*prometheus.CounterVec),
		paySeconds: f(prometheus.NewHistogram(prometheus.HistogramOpts{Name: "perund_payment_duration_seconds",
			Help: "Duration of a payment, from the user's call until the peer signed the new state.", Buckets: latency})).(prometheus.Histogram),
		proposals: f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "perund_proposals_total",
			Help: "Incoming channel proposals by outcome (accepted, rejected, expired)."}, []string{"outcome"})).(*prometheus.CounterVec),
		updates: f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "perund_updates_total",
			Help: "Incoming channel updates by kind (payment, request, close) and outcome (accepted, rejected, expired)."}, []string{"kind", "outcome"})).(*prometheus.CounterVec),
		disputes: f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "perund_dispute_events_total",
			Help: "On-chain dispute events of the node's channels by kind (registered, progressed, concluded, withdrawn; refuted: a refutation mined)."}, []string{"event"})).(*prometheus.CounterVec),
		txs: f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "perund_chain_transactions_total",
			Help: "Transactions the node sent by purpose (the contract method) and result (mined, reverted, not_sent)."}, []string{"purpose", "result"})).(*prometheus.CounterVec),
		gas: f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "perund_chain_gas_used_total",
			Help: "Gas used by the node's mined transactions by purpose."}, []string{"purpose"})).(*prometheus.CounterVec),
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds a collector (e.g. one that reads the node's channels at
// scrape time).
func (m *Metrics) Register(c prometheus.Collector) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(c) //nolint:wrapcheck // prometheus's own error names the metric
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Gatherer is the registry, for tests that read the metrics.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// DroppedSubscriber counts a subscription ended for a slow reader.
func (m *Metrics) DroppedSubscriber() {
	if m != nil {
		m.dropped.Inc()
	}
}

// Call records an API call: its method, result code (0 for a result) and
// duration.
func (m *Metrics) Call(method string, code int64, d time.Duration) {
	if m == nil {
		return
	}
	m.rpcCalls.WithLabelValues(method, strconv.FormatInt(code, 10)).Inc()
	m.rpcSeconds.WithLabelValues(method).Observe(d.Seconds())
}

// Payment records a payment the user sent: its asset, result ("ok" or the
// kind of error) and, when it succeeded, its duration.
func (m *Metrics) Payment(asset, result string, d time.Duration) {
	if m == nil {
		return
	}
	m.payments.WithLabelValues(asset, result).Inc()
	if result == "ok" {
		m.paySeconds.Observe(d.Seconds())
	}
}

// Proposal records the outcome of an incoming proposal.
func (m *Metrics) Proposal(outcome string) {
	if m != nil {
		m.proposals.WithLabelValues(outcome).Inc()
	}
}

// Update records the outcome of an incoming update of a kind.
func (m *Metrics) Update(kind, outcome string) {
	if m != nil {
		m.updates.WithLabelValues(kind, outcome).Inc()
	}
}

// Dispute records an on-chain dispute event.
func (m *Metrics) Dispute(event string) {
	if m != nil {
		m.disputes.WithLabelValues(event).Inc()
	}
}

// Transaction records a transaction the node sent: its purpose, result
// (mined, reverted, not_sent) and the gas it used (0 when not mined).
func (m *Metrics) Transaction(purpose, result string, gasUsed uint64) {
	if m == nil {
		return
	}
	m.txs.WithLabelValues(purpose, result).Inc()
	if gasUsed > 0 {
		m.gas.WithLabelValues(purpose).Add(float64(gasUsed))
	}
}
