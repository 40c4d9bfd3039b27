package rpc

import (
	"context"
	"time"
)

// WaitConns waits until at most n connections of s are open, each one
// ended with all its goroutines, or ctx ends (tests only).
func (s *Server) WaitConns(ctx context.Context, n int) error { return s.waitConns(ctx, n) }

// SetKeepaliveForTest sets the keepalive timing of s's connections; call
// it before Serve (tests only).
func (s *Server) SetKeepaliveForTest(ping, wait time.Duration) { s.pingPeriod, s.pongWait = ping, wait }

// AddPanickingMethodForTest adds a method name, callable without a
// session, whose handler panics with v; call it before Serve (tests only).
func (s *Server) AddPanickingMethodForTest(name string, v any) {
	m := *s.methods["node_info"]
	m.fn = func(*call) (any, error) { panic(v) }
	s.methods[name] = &m
}
