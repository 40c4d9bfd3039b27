// Package rpc is perund's user API: JSON-RPC 2.0 over WebSocket, with
// push subscriptions, one user session bound per connection.
//
// sourcegraph/jsonrpc2's Conn is not used for the transport: it closes the
// connection on a frame it cannot decode, cannot process batches and keeps
// ids as unsigned numbers or strings. perund parses every frame itself
// (answering -32700/-32600 as the specification says), echoes ids
// byte-for-byte and uses the library's Error type and error codes.
package rpc

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/perund/perund/config"
	"github.com/perund/perund/metrics"
	"github.com/perund/perund/node"
)

// Keepalive timing: a connection that answers no ping for pongWait is
// dropped (a server's own timing is set by NewServer; tests shorten it).
const (
	pingPeriod = 20 * time.Second
	pongWait   = 60 * time.Second
	writeWait  = 10 * time.Second
)

// Server serves the API on /rpc, the health check on /healthz and, if set,
// the web wallet on /.
type Server struct {
	node     *node.Node
	cfg      config.RPC
	log      *slog.Logger
	web      http.Handler
	upgrader websocket.Upgrader
	conns    atomic.Int64
	methods  map[string]*method
	// pingPeriod and pongWait are the keepalive timing of the server's
	// connections.
	pingPeriod, pongWait time.Duration
	// metrics, if set, count calls and connections and are served at
	// /metrics (SetMetrics).
	metrics *metrics.Metrics

	// callCtx is the parent of every call's context, cancelled when a
	// shutdown's grace period for calls in flight ends.
	callCtx   context.Context
	stopCalls context.CancelFunc

	mu      sync.Mutex
	hs      *http.Server
	active  map[*conn]struct{}
	closing bool
	wg      sync.WaitGroup
	// connGone is closed (and replaced) each time a connection has ended.
	connGone chan struct{}
}

// NewServer returns the API server of n. web may be nil.
func NewServer(n *node.Node, cfg config.RPC, log *slog.Logger, web http.Handler) *Server {
	s := &Server{node: n, cfg: cfg, log: log, web: web, active: map[*conn]struct{}{}, connGone: make(chan struct{}),
		pingPeriod: pingPeriod, pongWait: pongWait}
	s.callCtx, s.stopCalls = context.WithCancel(context.Background())
	s.upgrader = websocket.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		CheckOrigin:     s.checkOrigin,
		// HandshakeTimeout applies to the upgrade response; reading the
		// request headers is bounded by the http.Server (see Serve).
		HandshakeTimeout: cfg.HandshakeTimeout,
	}
	s.methods = methodTable()
	return s
}

// Handler returns the HTTP handler of the server. The API's own HTTP
// answers (health check, refused upgrades, unknown paths without a web
// wallet) carry the headers of apiHeaders; the web handler sets its own.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/rpc", apiHeaders(s.tokenRequired(http.HandlerFunc(s.serveWS))))
	mux.Handle("/healthz", apiHeaders(http.HandlerFunc(s.serveHealth)))
	if s.metrics != nil {
		mux.Handle("/metrics", apiHeaders(s.tokenRequired(s.metrics.Handler())))
	}
	if s.web != nil {
		mux.Handle("/", s.web)
	} else {
		mux.Handle("/", apiHeaders(http.NotFoundHandler()))
	}
	return mux
}

// apiCSP lets nothing that the API answers over HTTP load or run anything,
// nor be framed.
const apiCSP = "default-src 'none'; frame-ancestors 'none'"

// apiHeaders sets a Content-Security-Policy that allows nothing, forbids
// framing, referrers and content-type sniffing on every response of h. A
// successful upgrade does not carry them: gorilla writes the 101 itself.
func apiHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", apiCSP)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// serveHealth answers the health check: 200 with {"status":"ready"} when
// the node serves and the chain answers, else 503 with the node's state
// ("starting", "stopping" or "chainUnreachable").
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	h := s.node.Health(ctx)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !h.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(struct {
		Status string `json:"status"`
	}{h.Status})
}

// checkOrigin admits clients without Origin, same-origin pages and the
// configured origins ("*" admits all).
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimRight(o, "/"), origin) {
			return true
		}
	}
	return false
}

func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.AuthToken == "" {
		return true
	}
	tok := r.URL.Query().Get("token")
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		tok = strings.TrimPrefix(h, "Bearer ")
	}
	return subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AuthToken)) == 1
}

// serveWS upgrades a request that passed tokenRequired to a connection.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "this endpoint speaks JSON-RPC 2.0 over WebSocket", http.StatusBadRequest)
		return
	}
	if s.conns.Add(1) > int64(s.cfg.MaxConnections) {
		s.conns.Add(-1)
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.conns.Add(-1)
		return // the upgrader answered already
	}
	c := newConn(s, ws)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.conns.Add(-1)
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "shutting down"), time.Now().Add(time.Second))
		ws.Close()
		return
	}
	s.active[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		c.serve()
		s.conns.Add(-1)
		s.mu.Lock()
		delete(s.active, c)
		close(s.connGone)
		s.connGone = make(chan struct{})
		s.mu.Unlock()
	}()
}

// waitConns waits until at most n connections are open (each one closed
// with its goroutines ended) or ctx ends.
func (s *Server) waitConns(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		open, gone := len(s.active), s.connGone
		s.mu.Unlock()
		if open <= n {
			return nil
		}
		select {
		case <-gone:
		case <-ctx.Done():
			return fmt.Errorf("%d connections still open, want at most %d: %w", open, n, ctx.Err())
		}
	}
}

// Serve answers HTTP requests on ln, or HTTPS when rpc.tls is configured,
// until Shutdown; it returns nil after a Shutdown. ln is closed when Serve
// returns, also with an error. Clients that do not send
// their request headers within rpc.handshakeTimeout are disconnected.
func (s *Server) Serve(ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.HandshakeTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.cfg.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLS.Cert, s.cfg.TLS.Key)
		if err != nil {
			ln.Close() // Serve owns ln: it is closed whenever Serve returns
			return fmt.Errorf("config key rpc.tls: load certificate: %w", err)
		}
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.hs = hs
	s.mu.Unlock()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting connections and stops reading from the open
// ones. Calls in flight get until ctx's deadline less a second (at most
// DrainTimeout) to answer; the rest are interrupted and answer 1006. Then
// every connection is closed with 1001 going away.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closing = true
	hs := s.hs
	s.mu.Unlock()
	if hs != nil {
		_ = hs.Shutdown(ctx) // stops the listener; hijacked WebSockets are ours to close
	}
	s.mu.Lock()
	list := make([]*conn, 0, len(s.active))
	for c := range s.active {
		list = append(list, c)
	}
	s.mu.Unlock()
	for _, c := range list {
		c.drain()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	grace := DrainTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl)-time.Second < grace {
		grace = max(time.Until(dl)-time.Second, 0)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	s.stopCalls()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// DrainTimeout is the longest a shutdown waits for calls in flight before
// interrupting them.
const DrainTimeout = 10 * time.Second

// SetMetrics makes the server count its calls, connections, subscriptions
// and dropped subscribers in m, and serve m at /metrics (behind
// rpc.authToken when one is set). Call it before Serve.
func (s *Server) SetMetrics(m *metrics.Metrics) error {
	s.metrics = m
	if err := m.Register(serverCollector{s: s,
		conns: prometheus.NewDesc("perund_rpc_connections", "WebSocket connections to the API.", nil, nil),
		subs:  prometheus.NewDesc("perund_rpc_subscriptions", "Live subscriptions of the API's connections.", nil, nil),
	}); err != nil {
		return fmt.Errorf("register the API's metrics: %w", err)
	}
	return nil
}

// tokenRequired refuses a request without the node token (when one is
// set): the API's upgrade and /metrics.
func (s *Server) tokenRequired(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="perund"`)
			http.Error(w, "unauthorized: node token required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serverCollector reads the connections and their subscriptions at scrape
// time.
type serverCollector struct {
	s           *Server
	conns, subs *prometheus.Desc
}

// Describe sends the descriptions of the server's metrics.
func (c serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.conns
	ch <- c.subs
}

// Collect counts the open connections and their live subscriptions.
func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	conns := make([]*conn, 0, len(c.s.active))
	for cn := range c.s.active {
		conns = append(conns, cn)
	}
	c.s.mu.Unlock()
	subs := 0
	for _, cn := range conns {
		cn.subMu.Lock()
		subs += len(cn.subs)
		cn.subMu.Unlock()
	}
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(len(conns)))
	ch <- prometheus.MustNewConstMetric(c.subs, prometheus.GaugeValue, float64(subs))
}
