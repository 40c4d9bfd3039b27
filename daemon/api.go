package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/perund/perund/config"
)

// Server is what ServeAPI runs: perund's JSON-RPC server (rpc.Server; an
// interface so that the rpc package's own tests can use the kit, which
// uses this package).
type Server interface {
	// Serve answers on ln until Shutdown; it returns nil after Shutdown.
	Serve(ln net.Listener) error
	// Shutdown stops serving within ctx's deadline.
	Shutdown(ctx context.Context)
}

// API is a JSON-RPC server answering on its listener.
type API struct {
	srv  Server
	ln   net.Listener
	tls  bool
	done chan struct{}
	err  error // Serve's answer, set before done is closed
}

// ServeAPI listens on cfg.Listen and serves srv there (HTTPS and wss://
// when cfg has TLS) until Shutdown.
func ServeAPI(srv Server, cfg config.RPC) (*API, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("config key rpc.listen: %w", err)
	}
	a := &API{srv: srv, ln: ln, tls: cfg.TLS.Enabled(), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.err = srv.Serve(ln)
	}()
	return a, nil
}

// Addr is the address the API listens on.
func (a *API) Addr() net.Addr { return a.ln.Addr() }

// URL is the API's base URL (the web wallet's), http:// or https://.
func (a *API) URL() string {
	if a.tls {
		return "https://" + a.Addr().String()
	}
	return "http://" + a.Addr().String()
}

// RPCURL is the API's WebSocket endpoint, ws:// or wss://.
func (a *API) RPCURL() string {
	if a.tls {
		return "wss://" + a.Addr().String() + "/rpc"
	}
	return "ws://" + a.Addr().String() + "/rpc"
}

// Done is closed when the server has stopped serving: after Shutdown, or
// at a failure to serve (Err says which).
func (a *API) Done() <-chan struct{} { return a.done }

// Err is the error the server stopped serving with (nil after Shutdown);
// it is set once Done is closed.
func (a *API) Err() error {
	select {
	case <-a.done:
		if a.err != nil {
			return fmt.Errorf("rpc server: %w", a.err)
		}
	default:
	}
	return nil
}

// Shutdown stops the server (calls in flight get until ctx's deadline to
// answer, see rpc.Server.Shutdown) and waits until it has stopped serving.
func (a *API) Shutdown(ctx context.Context) error {
	a.srv.Shutdown(ctx)
	select {
	case <-a.done:
		return a.Err()
	case <-ctx.Done():
		return errors.New("rpc server: did not stop serving in time")
	}
}
