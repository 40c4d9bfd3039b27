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
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/perund/perund/config"
	"github.com/perund/perund/node"
)

// Keepalive timing: a connection that answers no ping for pongWait is dropped.
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

	mu      sync.Mutex
	active  map[*conn]struct{}
	closing bool
	wg      sync.WaitGroup
}

// NewServer returns the API server of n. web may be nil.
func NewServer(n *node.Node, cfg config.RPC, log *slog.Logger, web http.Handler) *Server {
	s := &Server{node: n, cfg: cfg, log: log, web: web, active: map[*conn]struct{}{}}
	s.upgrader = websocket.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		CheckOrigin:     s.checkOrigin,
	}
	s.methods = methodTable()
	return s
}

// Handler returns the HTTP handler of the server.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/rpc", s.serveWS)
	mux.HandleFunc("/healthz", s.serveHealth)
	if s.web != nil {
		mux.Handle("/", s.web)
	}
	return mux
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.node.Healthy(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("chain unreachable\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
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

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="perund"`)
		http.Error(w, "unauthorized: node token required", http.StatusUnauthorized)
		return
	}
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
		s.mu.Lock()
		delete(s.active, c)
		s.mu.Unlock()
		s.conns.Add(-1)
	}()
}

// Shutdown closes every connection (going away) and waits for them.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closing = true
	list := make([]*conn, 0, len(s.active))
	for c := range s.active {
		list = append(list, c)
	}
	s.mu.Unlock()
	for _, c := range list {
		c.closeGoingAway()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
