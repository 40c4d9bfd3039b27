package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/config"
	"github.com/perund/perund/daemon"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/node"
	"github.com/perund/perund/rpc"
)

// Config bounds a load run.
type Config struct {
	Sessions int
	Conns    int
	Duration time.Duration
	Payers   int
}

// Report is what a run measured.
type Report struct {
	Sessions      int     `json:"sessions"`
	Channels      int     `json:"channels"`
	Conns         int     `json:"conns"`
	Subscriptions int     `json:"subscriptions"`
	SetupSeconds  float64 `json:"setupSeconds"`
	Seconds       float64 `json:"seconds"`
	Payments      int64   `json:"payments"`
	Failed        int64   `json:"failed"`
	PerSecond     float64 `json:"paymentsPerSecond"`
	Notifications int64   `json:"notifications"`
	LatencyMs     struct {
		P50, P90, P99, Max float64
	} `json:"latencyMs"`
	HeapMiB struct {
		Idle, Loaded, AfterClose float64
	} `json:"heapMiB"`
	Goroutines struct {
		Idle, Loaded, AfterClose int
	} `json:"goroutines"`
	// Leaked counts goroutines still running after every connection closed
	// beyond those of the idle node (sessions and channels still open),
	// by kind (creator and function; the embedded chain's own goroutines
	// are left out).
	Leaked int `json:"leaked"`
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "sessions %d, channels %d, WebSocket connections %d, subscriptions %d (setup %.1f s)\n",
		r.Sessions, r.Channels, r.Conns, r.Subscriptions, r.SetupSeconds)
	fmt.Fprintf(w, "payments  %d in %.1f s = %.0f/s (%d failed), notifications delivered %d\n",
		r.Payments, r.Seconds, r.PerSecond, r.Failed, r.Notifications)
	fmt.Fprintf(w, "latency   p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n",
		r.LatencyMs.P50, r.LatencyMs.P90, r.LatencyMs.P99, r.LatencyMs.Max)
	fmt.Fprintf(w, "heap      idle %.1f MiB  loaded %.1f MiB  after close %.1f MiB\n",
		r.HeapMiB.Idle, r.HeapMiB.Loaded, r.HeapMiB.AfterClose)
	fmt.Fprintf(w, "goroutines idle %d  loaded %d  after close %d  leaked %d\n",
		r.Goroutines.Idle, r.Goroutines.Loaded, r.Goroutines.AfterClose, r.Leaked)
}

// Run starts a node with cfg.Sessions accounts on the embedded chain, opens
// a channel between each pair, attaches cfg.Conns subscribed connections,
// pays for cfg.Duration and closes everything again. Progress goes to log.
func Run(ctx context.Context, cfg Config, logw io.Writer) (*Report, error) {
	if cfg.Sessions < 2 || cfg.Sessions%2 != 0 {
		return nil, errors.New("-sessions must be an even number of at least 2")
	}
	if cfg.Conns < cfg.Sessions {
		cfg.Conns = cfg.Sessions
	}
	pairs := cfg.Sessions / 2
	if cfg.Payers <= 0 {
		cfg.Payers = pairs
	}
	progress := func(format string, a ...any) { fmt.Fprintf(logw, "load: "+format+"\n", a...) }
	rep := &Report{Sessions: cfg.Sessions, Channels: pairs, Conns: cfg.Conns}
	start := time.Now()

	keys := make([]*ecdsa.PrivateKey, cfg.Sessions)
	alloc := map[common.Address]*big.Int{}
	for i := range keys {
		k, err := crypto.GenerateKey()
		if err != nil {
			return nil, err
		}
		keys[i] = k
		alloc[crypto.PubkeyToAddress(k.PublicKey)] = new(big.Int).Mul(big.NewInt(100), chain.Ether)
	}
	e, err := perundtest.StartChain(ctx, perundtest.ChainOptions{Alloc: alloc, BlockInterval: time.Second})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	dir, err := os.MkdirTemp("", "perund-load-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	lg := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelError}))
	n, err := e.Start(ctx, perundtest.NodeOptions{Dir: dir, Logger: lg, Flags: map[string]any{
		"rpc.maxConnections": cfg.Conns + 10, "channel.responseTimeout": "30s",
	}})
	if err != nil {
		return nil, err
	}
	ncfg := n.Config()
	nodeClosed := false
	defer func() {
		if !nodeClosed {
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = n.Close(cctx)
		}
	}()
	for i, k := range keys {
		if _, err := n.Keys().Import(k, "pw"+strconv.Itoa(i)); err != nil {
			return nil, err
		}
	}
	api, err := serveLoopback(n, ncfg.RPC, lg)
	if err != nil {
		return nil, err
	}
	apiStopped := false
	defer func() {
		if !apiStopped {
			sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = api.Shutdown(sctx)
		}
	}()
	url := api.RPCURL()

	// One connection per session opens it; the pairs open their channels.
	type user struct {
		c       *client
		addr    common.Address
		sid     string
		tok     string
		comm    string
		channel string
	}
	users := make([]*user, cfg.Sessions)
	var all []*client
	closeAll := func() {
		for _, c := range all {
			c.close()
		}
		all = nil
	}
	defer closeAll()
	for i, k := range keys {
		c, err := dial(ctx, url)
		if err != nil {
			return nil, err
		}
		all = append(all, c)
		var s struct {
			SessionID   string `json:"sessionId"`
			Token       string `json:"token"`
			CommAddress string `json:"commAddress"`
		}
		addr := crypto.PubkeyToAddress(k.PublicKey)
		if err := c.call(ctx, "session_open", map[string]any{"account": addr.Hex(), "password": "pw" + strconv.Itoa(i)}, &s); err != nil {
			return nil, fmt.Errorf("session %d: %w", i, err)
		}
		users[i] = &user{c: c, addr: addr, sid: s.SessionID, tok: s.Token, comm: s.CommAddress}
	}
	progress("%d sessions open", len(users))
	var wg sync.WaitGroup
	errc := make(chan error, pairs)
	for p := 0; p < pairs; p++ {
		a, b := users[2*p], users[2*p+1]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.c.call(ctx, "contacts_add", map[string]any{"alias": "peer", "address": b.addr.Hex(), "commAddress": b.comm}, nil); err != nil {
				errc <- err
				return
			}
			if err := b.c.call(ctx, "contacts_add", map[string]any{"alias": "peer", "address": a.addr.Hex(), "commAddress": a.comm}, nil); err != nil {
				errc <- err
				return
			}
			var sub string
			if err := b.c.call(ctx, "perun_subscribe", []string{"proposals"}, &sub); err != nil {
				errc <- err
				return
			}
			go func() {
				for ev := range b.c.notes {
					if id, ok := ev["proposalId"].(string); ok && ev["status"] == "pending" {
						_ = b.c.call(ctx, "proposal_respond", map[string]any{"proposalId": id, "accept": true}, nil)
						return
					}
				}
			}()
			var ch struct {
				ChannelID string `json:"channelId"`
			}
			one := new(big.Int).Mul(big.NewInt(1), chain.Ether).String()
			// Every transaction is a block of 10 s on the embedded chain, and
			// the funding timeout is the challenge duration of block time:
			// many channels opening at once need a long one.
			if err := a.c.call(ctx, "channel_open", map[string]any{"peer": "peer", "balance": map[string]string{"mine": one, "theirs": one},
				"challengeDuration": 100000}, &ch); err != nil {
				errc <- fmt.Errorf("open channel %d: %w", p, err)
				return
			}
			a.channel = ch.ChannelID
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	progress("%d channels open", pairs)
	for _, u := range users {
		u.c.countOnly()
	}

	runtime.GC()
	// The channels' watchers and chain subscriptions start just after an
	// open returns: count once the number has settled.
	rep.Goroutines.Idle = settledGoroutines(10 * time.Second)
	idleStacks := goroutineKinds()
	rep.HeapMiB.Idle = heapMiB()

	// The other connections resume a session each and subscribe.
	var extra []*client
	for i := cfg.Sessions; i < cfg.Conns; i++ {
		u := users[i%cfg.Sessions]
		c, err := dial(ctx, url)
		if err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		extra = append(extra, c)
		all = append(all, c)
		c.countOnly()
		if err := c.call(ctx, "session_resume", map[string]any{"sessionId": u.sid, "token": u.tok}, nil); err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		for _, topic := range []string{"channels", "updates"} {
			if err := c.call(ctx, "perun_subscribe", []string{topic}, nil); err != nil {
				return nil, fmt.Errorf("connection %d: %w", i, err)
			}
			rep.Subscriptions++
		}
	}
	rep.SetupSeconds = time.Since(start).Seconds()
	progress("%d connections, %d subscriptions; paying for %s", len(all), rep.Subscriptions, cfg.Duration)

	// Pay: each payer loops on one channel (both directions alternate by
	// channel so that every session both pays and gets paid).
	loops := make([]payLoop, 0, cfg.Payers)
	for i := 0; i < cfg.Payers; i++ {
		p := i % pairs
		payer := users[2*p]
		if (i/pairs)%2 == 1 {
			payer = users[2*p+1]
		}
		loops = append(loops, payLoop{c: payer.c, channel: users[2*p].channel})
	}
	res := pay(ctx, cfg.Duration, loops)
	rep.Seconds, rep.Payments, rep.Failed = res.seconds, res.payments, res.failed
	rep.PerSecond = float64(rep.Payments) / rep.Seconds
	rep.LatencyMs.P50, rep.LatencyMs.P90, rep.LatencyMs.P99 = res.pct(0.5), res.pct(0.9), res.pct(0.99)
	rep.LatencyMs.Max = res.pct(1)
	time.Sleep(500 * time.Millisecond) // the last notifications
	for _, c := range all {
		rep.Notifications += c.notified.Load()
	}
	rep.Goroutines.Loaded = runtime.NumGoroutine()
	rep.HeapMiB.Loaded = heapMiB()

	// Every extra connection closes: the node must return to its idle
	// goroutine count (the sessions and channels stay).
	for _, c := range extra {
		c.close()
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && leakedSince(idleStacks) > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	runtime.GC()
	rep.Goroutines.AfterClose = runtime.NumGoroutine()
	rep.HeapMiB.AfterClose = heapMiB()
	rep.Leaked = leakedSince(idleStacks)
	if rep.Leaked > 0 {
		// Name what is left: the goroutines' stacks, grouped.
		progress("%d goroutines more than idle; the process's goroutines:", rep.Leaked)
		_ = pprof.Lookup("goroutine").WriteTo(logw, 1)
	}
	progress("done")

	closeAll()
	sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
	defer scancel()
	apiStopped = true
	if err := api.Shutdown(sctx); err != nil {
		return nil, err
	}
	nodeClosed = true
	if err := n.Close(sctx); err != nil {
		return nil, fmt.Errorf("close node: %w", err)
	}
	return rep, nil
}

// payLoop is one payment loop: a client paying 1 wei on a channel.
type payLoop struct {
	c       *client
	channel string
}

// payResult is what the payment loops measured.
type payResult struct {
	payments, failed int64
	seconds          float64
	lats             []time.Duration // sorted
}

// pct is the q-quantile of the latencies in ms (1: the maximum).
func (r payResult) pct(q float64) float64 {
	if len(r.lats) == 0 {
		return 0
	}
	return float64(r.lats[min(int(q*float64(len(r.lats))), len(r.lats)-1)].Microseconds()) / 1000
}

// pay runs the loops at once for d, each waiting for its answer before
// paying again.
func pay(ctx context.Context, d time.Duration, loops []payLoop) payResult {
	var (
		payments, failed atomic.Int64
		mu               sync.Mutex
		lats             []time.Duration
		wg               sync.WaitGroup
	)
	pctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t0 := time.Now()
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for pctx.Err() == nil {
				s := time.Now()
				if err := l.c.call(ctx, "channel_send", map[string]any{"channelId": l.channel, "amount": "1"}, nil); err != nil {
					failed.Add(1)
					continue
				}
				mine = append(mine, time.Since(s))
				payments.Add(1)
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	return payResult{payments: payments.Load(), failed: failed.Load(), seconds: time.Since(t0).Seconds(), lats: lats}
}

func heapMiB() float64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// goroutineKinds counts the process's goroutines by kind: the function
// that created each and the function it runs. The embedded chain's own
// goroutines (go-ethereum's node, filters and RPC server, which come and
// go on their own schedule) are left out: the leak check is about perund.
func goroutineKinds() map[string]int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	kinds := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(strings.TrimSpace(g), "\n")
		if len(lines) < 2 {
			continue
		}
		top := funcName(lines[1])
		created := ""
		for _, l := range lines {
			if strings.HasPrefix(l, "created by ") {
				created = funcName(strings.TrimPrefix(l, "created by "))
			}
		}
		if strings.HasPrefix(created, "github.com/ethereum/go-ethereum/") && strings.HasPrefix(top, "github.com/ethereum/go-ethereum/") {
			continue
		}
		kinds[created+" > "+top]++
	}
	return kinds
}

// funcName is the function of a stack line ("pkg.F(args)" or "pkg.F in
// goroutine N").
func funcName(line string) string {
	line = strings.TrimSpace(line)
	if i := strings.Index(line, " in goroutine "); i >= 0 {
		line = line[:i]
	}
	if i := strings.LastIndex(line, "("); i > 0 {
		line = line[:i]
	}
	return line
}

// leakedSince counts the goroutines of kinds more numerous than in idle.
func leakedSince(idle map[string]int) int {
	n := 0
	for k, c := range goroutineKinds() {
		if c > idle[k] {
			n += c - idle[k]
		}
	}
	return n
}

// settledGoroutines returns the goroutine count once it stayed the same for
// 300 ms (or after limit).
func settledGoroutines(limit time.Duration) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); {
		time.Sleep(300 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// serveLoopback serves n's API with cfg on a free loopback port, as
// perund serves it (daemon.ServeAPI).
func serveLoopback(n *node.Node, cfg config.RPC, lg *slog.Logger) (*daemon.API, error) {
	cfg.Listen = "127.0.0.1:0"
	return daemon.ServeAPI(rpc.NewServer(n, cfg, lg, nil), cfg)
}
