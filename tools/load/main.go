// Command load puts a whole perund node under load: one process with the
// embedded chain, many user sessions with channels between them, and many
// WebSocket connections with subscriptions. It pays for a bounded time and
// reports throughput, latency percentiles, memory and goroutine counts, and
// checks that no goroutine is left once every connection has closed.
//
//	go run ./tools/load -sessions 100 -conns 1000 -duration 30s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
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
	flag.Parse()
	perunlog.Install(slog.New(slog.NewTextHandler(io.Discard, nil)))

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
