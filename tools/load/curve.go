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
	"github.com/perund/perund/contacts"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/keys"
	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
)

// CurveConfig bounds a cost-curve run.
type CurveConfig struct {
	// Points are the user counts measured, ascending (even numbers).
	Points []int
	// Duration is how long the paying users pay at each point.
	Duration time.Duration
	// Paying is the share of users logged in and paying at each point
	// (at least one pair).
	Paying float64
	// Batch is how many users are logged in at once while the channels are
	// opened.
	Batch int
	// HeapProfile, if set, is where the heap profile of the last point's
	// idle node is written.
	HeapProfile string
}

// CurvePoint is what one point of the curve measured. Users are idle
// (logged out) except while paying: every user has one open channel with
// another user of the node, so Users/2 channels are open.
type CurvePoint struct {
	Users    int `json:"users"`
	Channels int `json:"channels"`
	// Idle node, every user logged out, every channel watched.
	HeapMiB    float64 `json:"heapMiB"`
	RSSMiB     float64 `json:"rssMiB"`
	Goroutines int     `json:"goroutines"`
	FDs        int     `json:"fds"`
	// Per idle user, above the node without users.
	HeapKiBPerUser       float64 `json:"heapKiBPerUser"`
	GoroutinesPerUser    float64 `json:"goroutinesPerUser"`
	SetupSeconds         float64 `json:"setupSeconds"`
	RestoreSeconds       float64 `json:"restoreSeconds"`
	HeapMiBAfterRestart  float64 `json:"heapMiBAfterRestart"`
	GoroutinesAfterStart int     `json:"goroutinesAfterRestart"`
	// The paying users: logged in over WebSocket, one payer per channel.
	Paying    int     `json:"paying"`
	Payments  int64   `json:"payments"`
	Failed    int64   `json:"failed"`
	PerSecond float64 `json:"paymentsPerSecond"`
	P50Ms     float64 `json:"p50Ms"`
	P99Ms     float64 `json:"p99Ms"`
}

// PrintCurve writes the points as a table.
func PrintCurve(w io.Writer, pts []CurvePoint) {
	fmt.Fprintf(w, "%7s %8s %9s %8s %7s %6s %9s %7s %8s %9s %7s %8s %8s %8s\n",
		"users", "channels", "heap MiB", "RSS MiB", "gorout", "fds", "KiB/user", "gr/user", "setup s", "restore s", "paying", "pay/s", "p50 ms", "p99 ms")
	for _, p := range pts {
		fmt.Fprintf(w, "%7d %8d %9.1f %8.1f %7d %6d %9.1f %7.2f %8.1f %9.2f %7d %8.0f %8.2f %8.2f\n",
			p.Users, p.Channels, p.HeapMiB, p.RSSMiB, p.Goroutines, p.FDs, p.HeapKiBPerUser, p.GoroutinesPerUser,
			p.SetupSeconds, p.RestoreSeconds, p.Paying, p.PerSecond, p.P50Ms, p.P99Ms)
	}
}

// curve is the state of a run: one chain, one data dir, a node restarted
// at each point.
type curve struct {
	cfg    CurveConfig
	chain  *perundtest.Chain
	dir    string
	op     *ecdsa.PrivateKey
	keys   []*ecdsa.PrivateKey
	lg     *slog.Logger
	logw   io.Writer
	n      *node.Node
	baseHp float64
	baseGr int
}

// RunCurve grows one node through cfg.Points users, each with an open
// channel, and measures each point idle, after a restart and with the
// paying share of its users paying.
func RunCurve(ctx context.Context, cfg CurveConfig, logw io.Writer) ([]CurvePoint, error) {
	if len(cfg.Points) == 0 || !sort.IntsAreSorted(cfg.Points) {
		return nil, errors.New("-users: give ascending user counts, such as 100,1000,10000")
	}
	for _, p := range cfg.Points {
		if p < 2 || p%2 != 0 {
			return nil, fmt.Errorf("-users: %d is not an even number of at least 2", p)
		}
	}
	if cfg.Batch < 2 {
		cfg.Batch = 200
	}
	cfg.Batch -= cfg.Batch % 2
	if cfg.Paying <= 0 {
		cfg.Paying = 0.01
	}
	most := cfg.Points[len(cfg.Points)-1]
	cv := &curve{cfg: cfg, logw: logw, lg: slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelError}))}
	cv.progress("generating %d keys", most)
	alloc := map[common.Address]*big.Int{}
	cv.keys = make([]*ecdsa.PrivateKey, most)
	for i := range cv.keys {
		k, err := crypto.GenerateKey()
		if err != nil {
			return nil, err
		}
		cv.keys[i] = k
		alloc[crypto.PubkeyToAddress(k.PublicKey)] = new(big.Int).Mul(big.NewInt(100), chain.Ether)
	}
	var err error
	if cv.op, err = crypto.GenerateKey(); err != nil {
		return nil, err
	}
	alloc[crypto.PubkeyToAddress(cv.op.PublicKey)] = new(big.Int).Mul(big.NewInt(100), chain.Ether)
	kit, err := perundtest.StartChain(ctx, perundtest.ChainOptions{Alloc: alloc, BlockInterval: time.Second})
	if err != nil {
		return nil, err
	}
	defer kit.Close()
	cv.chain = kit
	if cv.dir, err = os.MkdirTemp("", "perund-curve-*"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(cv.dir)
	if err := cv.start(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if cv.n != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			_ = cv.n.Close(cctx)
		}
	}()
	runtime.GC()
	cv.baseHp, cv.baseGr = heapMiB(), settledGoroutines(5*time.Second)

	var pts []CurvePoint
	have := 0
	for _, target := range cfg.Points {
		p := CurvePoint{Users: target, Channels: target / 2}
		t0 := time.Now()
		if err := cv.addUsers(ctx, have, target); err != nil {
			return pts, err
		}
		have = target
		p.SetupSeconds = time.Since(t0).Seconds()
		if got := cv.n.WatchStats().Watched; got != p.Channels {
			return pts, fmt.Errorf("%d users: the watchtower watches %d channels, want %d", target, got, p.Channels)
		}
		cv.measureIdle(&p)
		if cfg.HeapProfile != "" && target == most {
			if err := writeHeapProfile(cfg.HeapProfile); err != nil {
				return pts, err
			}
		}
		cv.progress("%d users idle: heap %.1f MiB, RSS %.1f MiB, %d goroutines", target, p.HeapMiB, p.RSSMiB, p.Goroutines)

		if err := cv.restart(ctx, &p); err != nil {
			return pts, err
		}
		cv.progress("%d users restored in %.2f s", target, p.RestoreSeconds)
		if err := cv.pay(ctx, &p); err != nil {
			return pts, err
		}
		cv.progress("%d users: %d paying, %.0f payments/s, p99 %.2f ms", target, p.Paying, p.PerSecond, p.P99Ms)
		pts = append(pts, p)
	}
	return pts, nil
}

func (cv *curve) progress(format string, a ...any) {
	fmt.Fprintf(cv.logw, "curve: "+format+"\n", a...)
}

func (cv *curve) start(ctx context.Context) error {
	// The keys are throw-away: the weakest scrypt keeps their import and
	// unlocking out of the measurement (a login costs about 85 ms of CPU
	// with keystore.lightKdf, a second with the standard strength).
	kdf := keys.BenchKDF
	n, err := cv.chain.Start(ctx, perundtest.NodeOptions{
		Dir:    cv.dir,
		Flags:  map[string]any{"rpc.maxConnections": 100_000, "channel.responseTimeout": "60s"},
		Logger: cv.lg,
		Options: func(o *node.Options) {
			o.Watcher, o.KDF = cv.op, &kdf
		},
	})
	if err != nil {
		return err
	}
	cv.n = n
	return nil
}

func (cv *curve) addr(i int) common.Address { return crypto.PubkeyToAddress(cv.keys[i].PublicKey) }

func password(i int) string { return "pw" + strconv.Itoa(i) }

// addUsers imports users [from, to), and, a batch at a time, logs them in,
// opens a channel between each pair and logs them out with force.
func (cv *curve) addUsers(ctx context.Context, from, to int) error {
	var wg sync.WaitGroup
	var importErr atomic.Value
	next := atomic.Int64{}
	next.Store(int64(from))
	for w := 0; w < runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < to; i = int(next.Add(1) - 1) {
				if _, err := cv.n.Keys().Import(cv.keys[i], password(i)); err != nil {
					importErr.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := importErr.Load().(error); err != nil {
		return fmt.Errorf("import keys: %w", err)
	}
	cv.progress("%d keys imported", to)
	for b := from; b < to; b += cv.cfg.Batch {
		end := min(b+cv.cfg.Batch, to)
		if err := cv.openBatch(ctx, b, end); err != nil {
			return err
		}
		if (end-from)%(cv.cfg.Batch*10) == 0 || end == to {
			cv.progress("%d of %d users have a channel", end, to)
		}
	}
	return nil
}

func (cv *curve) openBatch(ctx context.Context, from, to int) error {
	logins := make([]node.Login, 0, to-from)
	for i := from; i < to; i++ {
		logins = append(logins, node.Login{Account: cv.addr(i), Password: password(i)})
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	ss, err := cv.n.OpenSessions(octx, logins)
	if err != nil {
		return fmt.Errorf("log in users %d to %d: %w", from, to, err)
	}
	defer func() {
		for _, s := range ss {
			_ = cv.n.CloseSession(octx, s, true)
		}
	}()
	one := new(big.Int).Set(chain.Ether)
	errc := make(chan error, len(ss)/2)
	var wg sync.WaitGroup
	for p := 0; p+1 < len(ss); p += 2 {
		a, b := ss[p], ss[p+1]
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- openPair(octx, a, b, one)
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return err
		}
	}
	return nil
}

// openPair opens a channel from a to b (b accepts).
func openPair(ctx context.Context, a, b *node.Session, amount *big.Int) error {
	if _, err := a.AddContact(contacts.Contact{Alias: "peer", Address: b.Address(), CommAddress: b.CommAddress()}); err != nil {
		return err
	}
	if _, err := b.AddContact(contacts.Contact{Alias: "peer", Address: a.Address(), CommAddress: a.CommAddress()}); err != nil {
		return err
	}
	props, err := b.Hub().Subscribe(subscriptions.Proposals)
	if err != nil {
		return err
	}
	defer b.Hub().Unsubscribe(props.ID())
	accepted := make(chan error, 1)
	go func() {
		for ev := range props.Events() {
			if pi, ok := ev.(node.ProposalInfo); ok && pi.Status == node.StatusPending {
				_, err := b.RespondProposal(ctx, pi.ProposalID, true, "")
				accepted <- err
				return
			}
		}
		accepted <- errors.New("proposal subscription ended")
	}()
	// A long challenge: the funding timeout is measured in it.
	if _, err := a.OpenChannel(ctx, "peer", "ETH", amount, amount, 100000); err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	return <-accepted
}

// measureIdle reads the idle node's cost.
func (cv *curve) measureIdle(p *CurvePoint) {
	runtime.GC()
	p.Goroutines = settledGoroutines(10 * time.Second)
	p.HeapMiB = heapMiB()
	p.RSSMiB = rssMiB()
	p.FDs = openFDs()
	p.HeapKiBPerUser = (p.HeapMiB - cv.baseHp) * 1024 / float64(p.Users)
	p.GoroutinesPerUser = float64(p.Goroutines-cv.baseGr) / float64(p.Users)
}

// restart closes the node and starts it again from its data dir; restore
// time runs until the watchtower has checked every channel on chain.
func (cv *curve) restart(ctx context.Context, p *CurvePoint) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := cv.n.Close(cctx); err != nil {
		return fmt.Errorf("close node: %w", err)
	}
	cv.n = nil
	t0 := time.Now()
	if err := cv.start(cctx); err != nil {
		return fmt.Errorf("restart node: %w", err)
	}
	for cv.n.WatchStats().Checks < uint64(p.Channels) {
		if cctx.Err() != nil {
			return fmt.Errorf("restart: the watchtower checked %d of %d channels", cv.n.WatchStats().Checks, p.Channels)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.RestoreSeconds = time.Since(t0).Seconds()
	runtime.GC()
	p.HeapMiBAfterRestart = heapMiB()
	p.GoroutinesAfterStart = settledGoroutines(5 * time.Second)
	return nil
}

// pay logs the paying share of users in over WebSocket, pays for the
// configured duration, one payer per channel, and logs them out again.
func (cv *curve) pay(ctx context.Context, p *CurvePoint) error {
	k := int(float64(p.Users) * cv.cfg.Paying)
	k = max(k-k%2, 2)
	p.Paying = k
	api, err := serveLoopback(cv.n, cv.n.Config().RPC, cv.lg)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = api.Shutdown(sctx)
	}()
	url := api.RPCURL()
	clients := make([]*client, k)
	chans := make([]string, k)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.close()
			}
		}
	}()
	for i := 0; i < k; i++ {
		c, err := dial(ctx, url)
		if err != nil {
			return err
		}
		clients[i] = c
		c.countOnly()
		var s struct {
			Channels []struct {
				ChannelID string `json:"channelId"`
			} `json:"channels"`
		}
		if err := c.call(ctx, "session_open", map[string]any{"account": cv.addr(i).Hex(), "password": password(i)}, &s); err != nil {
			return fmt.Errorf("log in user %d: %w", i, err)
		}
		if len(s.Channels) != 1 {
			return fmt.Errorf("user %d has %d channels, want 1", i, len(s.Channels))
		}
		chans[i] = s.Channels[0].ChannelID
	}
	loops := make([]payLoop, 0, k/2)
	for i := 0; i < k; i += 2 {
		loops = append(loops, payLoop{c: clients[i], channel: chans[i]})
	}
	res := pay(ctx, cv.cfg.Duration, loops)
	p.Payments, p.Failed = res.payments, res.failed
	p.PerSecond = float64(p.Payments) / res.seconds
	p.P50Ms, p.P99Ms = res.pct(0.5), res.pct(0.99)
	for _, c := range clients {
		if err := c.call(ctx, "session_close", map[string]any{"force": true}, nil); err != nil {
			return fmt.Errorf("log out: %w", err)
		}
	}
	return nil
}

// rssMiB is the process's resident set size.
func rssMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// openFDs counts the process's open file descriptors.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}
