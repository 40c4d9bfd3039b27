// Package bench measures perund against go-perun alone: payments per
// second and latency through the API, memory per session and channel, and
// the start-up time of perund dev. Run: make bench.
package bench

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"crypto/elliptic"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/perunlog"
)

const (
	keyAlice = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
	keyBob   = "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
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
func newChain(b testing.TB, addrs ...common.Address) (*chain.Embedded, chain.Contracts) {
	alloc := map[common.Address]*big.Int{}
	for _, a := range addrs {
		alloc[a] = eth(1000)
	}
	ch := perundtest.NewChain(b, perundtest.ChainOptions{Alloc: alloc, BlockInterval: time.Second})
	return ch.Embedded, ch.Contracts
}

func testCert(b testing.TB) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(b, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(b, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(b, err)
	c, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	require.NoError(b, err)
	return c
}

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
