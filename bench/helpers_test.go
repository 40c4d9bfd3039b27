// Package bench measures perund against go-perun alone: payments per
// second and latency through the API, memory per session and channel, and
// the start-up time of perund dev. Run: make bench.
package bench

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/perunlog"
)

const (
	keyAlice = perundtest.KeyAlice
	keyBob   = perundtest.KeyBob
)

func TestMain(m *testing.M) {
	perunlog.Install(slog.New(slog.NewTextHandler(io.Discard, nil)))
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

func eth(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), chain.Ether) }

// newChain starts an embedded chain funding addrs with 1000 ETH each and
// deploys the contracts.
func newChain(b testing.TB, addrs ...common.Address) *perundtest.Chain {
	alloc := map[common.Address]*big.Int{}
	for _, a := range addrs {
		alloc[a] = eth(1000)
	}
	return perundtest.NewChain(b, perundtest.ChainOptions{Alloc: alloc, BlockInterval: time.Second})
}

func testCert(b testing.TB) tls.Certificate { return perundtest.SelfSigned(b).TLS }

// latencies collects durations and reports percentiles.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func newLatencies(n int) *latencies { return &latencies{d: make([]time.Duration, 0, n)} }

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// report adds p50/p90/p99 in microseconds as benchmark metrics.
func (l *latencies) report(b *testing.B, prefix string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return
	}
	sort.Slice(l.d, func(i, j int) bool { return l.d[i] < l.d[j] })
	for _, p := range []int{50, 90, 99} {
		idx := (len(l.d)*p + 99) / 100
		if idx >= len(l.d) {
			idx = len(l.d) - 1
		}
		if idx > 0 {
			idx--
		}
		b.ReportMetric(float64(l.d[idx].Microseconds()), fmt.Sprintf("%sp%d-µs", prefix, p))
	}
}
