package bench

import (
	"testing"
	"time"

	"github.com/perund/perund/internal/pgtest"
)

// pg is the PostgreSQL cluster of BenchmarkStoreBackends, started on first
// use and stopped by TestMain.
var pg = pgtest.NewCluster()

// BenchmarkStoreBackends: one channel, sequential channel_send calls
// through the API (node A to node B over TCP+TLS, auto-accepted), with
// both nodes' channel stores in LevelDB (store.sync off, the default; and
// on) and in PostgreSQL (a database each in one local cluster), one run.
// Reports payments/s and the call latency.
func BenchmarkStoreBackends(b *testing.B) {
	for _, bk := range []struct {
		name string
		cfg  func(b *testing.B) map[string]any
	}{
		{"leveldb", func(*testing.B) map[string]any { return nil }},
		{"leveldb-sync", func(*testing.B) map[string]any { return map[string]any{"store.sync": true} }},
		{"postgres", func(b *testing.B) map[string]any { return map[string]any{"store.url": pg.Database(b)} }},
	} {
		b.Run(bk.name, func(b *testing.B) {
			alices, _, chs := setupPairsWith(b, 1, bk.cfg(b), bk.cfg(b))
			a, ch := alices[0], chs[0]
			lat := newLatencies(b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				m := a.c.Call("channel_send", map[string]any{"channelId": ch, "amount": "1"})
				lat.add(time.Since(t0))
				if m["error"] != nil {
					b.Fatal(m["error"])
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "payments/s")
			lat.report(b, "send-")
		})
	}
}
