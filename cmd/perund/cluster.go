package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/perund/perund/cluster"
	"github.com/perund/perund/config"
	"github.com/perund/perund/node"
)

// exitLeaseLost is perund's exit code when it stops because it lost the
// cluster lease: a supervisor starts it again, and it stands by.
const exitLeaseLost = 3

// errStandbyStopped ends a standby stopped (SIGTERM) before it took the
// lease: perund exits 0.
var errStandbyStopped = errors.New("standby stopped")

// standBy waits as the standby of a cluster (cluster.enabled) until it
// takes the lease: meanwhile it answers on rpc.listen with 503 and
// /healthz with {"status":"standby"}, so that a proxy routes to the active
// node. It returns the held lease, with a watch that ends the process
// (exit code 3) at once if the lease is lost; stop ends that watch for a
// graceful shutdown.
func standBy(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *cluster.Lease, stop func(), err error) {
	lease, err := cluster.Open(ctx, cluster.Options{URL: cfg.Store.URL, ID: cfg.Cluster.ID, Timeout: cfg.Cluster.LeaseTimeout, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			lease.Close()
		}
	}()
	ln, err := net.Listen("tcp", cfg.RPC.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("config key rpc.listen: %w", err)
	}
	hs := &http.Server{Handler: standbyHandler(), ReadHeaderTimeout: cfg.RPC.HandshakeTimeout}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if cfg.RPC.TLS.Enabled() {
			_ = hs.ServeTLS(ln, cfg.RPC.TLS.Cert, cfg.RPC.TLS.Key)
		} else {
			_ = hs.Serve(ln)
		}
	}()
	log.Info("perund standing by for the cluster lease", "rpc", ln.Addr().String(), "holder", lease.ID(), "leaseTimeout", lease.Timeout())
	epoch, err := lease.Acquire(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx) // frees rpc.listen for the API
	<-served
	if err != nil {
		if ctx.Err() != nil {
			log.Info("standby stopped")
			return nil, nil, errStandbyStopped
		}
		return nil, nil, err
	}
	log.Info("perund is the cluster's active node", "epoch", epoch)
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-lease.Lost():
			// Stop serving at once: the process ends, closing the API and
			// the peer port with it. Nothing more is signed meanwhile
			// (the gate refuses), nor written (the store is fenced).
			log.Error("cluster lease lost: exiting so that a supervisor restarts perund as the standby", "err", lease.Err())
			os.Exit(exitLeaseLost)
		case <-done:
		}
	}()
	return lease, func() { close(done); <-stopped }, nil
}

// standbyHandler answers every request of a standby: 503, with
// {"status":"standby"} on /healthz.
func standbyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Path == "/healthz" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(struct {
				Status string `json:"status"`
			}{"standby"})
			return
		}
		http.Error(w, "perund standby: the cluster's active node serves", http.StatusServiceUnavailable)
	})
}

// clusterOptions sets the node's gate and store epoch from the lease (nil
// outside a cluster).
func clusterOptions(o *node.Options, lease *cluster.Lease) {
	if lease == nil {
		return
	}
	o.Gate = lease
	o.Epoch = lease.Epoch()
}

// releaseLease lets a standby take over at once after a graceful stop.
func releaseLease(lease *cluster.Lease, log *slog.Logger) {
	if lease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := lease.Release(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("release the cluster lease (a standby takes over after the lease timeout)", "err", err)
	}
	lease.Close()
}

// restoreSessions brings back the sessions that were open before a
// restart or a failover, for the accounts with a password file in
// sessions.passwordDir, then ends the node's starting state. A failure is
// logged: those users log in again.
func restoreSessions(ctx context.Context, n *node.Node, cfg *config.Config, log *slog.Logger) {
	if cfg.Sessions.PasswordDir == "" {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	back, err := n.RestoreSessions(rctx)
	if err != nil {
		log.Warn("sessions not restored: their users log in again", "err", err)
	}
	log.Info("sessions restored", "count", back)
	n.SetReady()
}
