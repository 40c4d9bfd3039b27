package rpc

import "context"

// WaitConns waits until at most n connections of s are open, each one
// ended with all its goroutines, or ctx ends (tests only).
func (s *Server) WaitConns(ctx context.Context, n int) error { return s.waitConns(ctx, n) }
