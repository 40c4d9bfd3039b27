// Command load puts a whole perund node under load: one process with the
// embedded chain, many user sessions with channels between them, and many
// WebSocket connections with subscriptions. It pays for a bounded time and
// reports throughput, latency percentiles, memory and goroutine counts, and
// checks that no goroutine is left once every connection has closed.
//
//	go run ./tools/load -sessions 100 -conns 1000 -duration 30s
//
// With -users it measures the cost curve instead: one node grows through
// the given numbers of users, each with an open channel with another user
// of the node, and each point is measured idle (every user logged out,
// every channel watched), after a restart and with a share of its users
// paying:
//
//	go run ./tools/load -users 100,1000,10000 -duration 10s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/perund/perund/perunlog"
)

func main() {
	var cfg Config
	flag.IntVar(&cfg.Sessions, "sessions", 100, "user sessions (an even number; pairs share a channel)")
	flag.IntVar(&cfg.Conns, "conns", 1000, "WebSocket connections in all (at least one per session), each subscribed")
	flag.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long to pay")
	flag.IntVar(&cfg.Payers, "payers", 0, "concurrent payment loops (default: one per channel)")
	asJSON := flag.Bool("json", false, "print the report as JSON")
	users := flag.String("users", "", "measure the cost curve at these user counts (comma-separated, ascending)")
	paying := flag.Float64("paying", 0.01, "with -users: the share of users paying at each point")
	batch := flag.Int("batch", 200, "with -users: users logged in at once while opening channels")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	memProfile := flag.String("memprofile", "", "with -users: write the heap profile of the last point's idle node to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "load: -cpuprofile:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	perunlog.Install(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if *users != "" {
		code := curveMain(CurveConfig{Paying: *paying, Batch: *batch, Duration: cfg.Duration, HeapProfile: *memProfile}, *users, *asJSON)
		pprof.StopCPUProfile()
		os.Exit(code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+10*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		rep.Print(os.Stdout)
	}
	if rep.Leaked > 0 {
		fmt.Fprintf(os.Stderr, "load: %d goroutines leaked\n", rep.Leaked)
		os.Exit(1)
	}
}

func curveMain(cc CurveConfig, users string, asJSON bool) int {
	var points []int
	for _, f := range strings.Split(users, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			fmt.Fprintf(os.Stderr, "load: -users: %q is not a number\n", f)
			return 2
		}
		points = append(points, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	cc.Points = points
	pts, err := RunCurve(ctx, cc, os.Stderr)
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(pts)
	} else {
		PrintCurve(os.Stdout, pts)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 1
	}
	return 0
}
