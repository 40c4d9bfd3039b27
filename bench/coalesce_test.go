package bench

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
)

// BenchmarkCoalesced: concurrent channel_send calls on ONE channel through
// the API (real WebSockets, node A to node B, auto-accepted), 1, 10 and
// 100 senders; payments that wait together are carried by one go-perun
// update (node/coalesce.go). Beside it, in the same run, go-perun alone
// (two bare clients over TCP+TLS with LevelDB, sequential updates: go-perun
// serialises a channel's updates, so concurrent callers of one channel
// queue up). Reports payments/s (updates/s for go-perun) and the call
// latency.
func BenchmarkCoalesced(b *testing.B) {
	b.Run("goperun-direct", func(b *testing.B) {
		ka, _ := crypto.HexToECDSA(keyAlice)
		kb, _ := crypto.HexToECDSA(keyBob)
		e, c := newChain(b, crypto.PubkeyToAddress(ka.PublicKey), crypto.PubkeyToAddress(kb.PublicKey))
		pay := directChannel(b, e, c, ka, kb)
		lat := newLatencies(b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if err := pay(); err != nil {
				b.Fatal(err)
			}
			lat.add(time.Since(t0))
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "payments/s")
		lat.report(b, "")
	})
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("senders=%d", n), func(b *testing.B) {
			alices, _, chs := setupPairs(b, 1)
			a, ch := alices[0], chs[0]
			lat := newLatencies(b.N)
			b.ResetTimer()
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				count := b.N / n
				if i < b.N%n {
					count++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := 0; j < count; j++ {
						t0 := time.Now()
						m := a.c.Call("channel_send", map[string]any{"channelId": ch, "amount": "1"})
						lat.add(time.Since(t0))
						if m["error"] != nil {
							b.Error(m["error"])
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "payments/s")
			var info struct {
				Version uint64 `json:"version"`
			}
			a.c.OK("channel_get", map[string]any{"channelId": ch}, &info)
			b.ReportMetric(float64(b.N)/float64(info.Version), "payments/update")
			lat.report(b, "send-")
		})
	}
}
