package bench

import (
	"fmt"
	"testing"
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
		lat := directPayments(b)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "payments/s")
		lat.report(b, "")
	})
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("senders=%d", n), func(b *testing.B) {
			alices, _, chs := setupPairs(b, 1)
			a, ch := alices[0], chs[0]
			lat := sendConcurrently(b, n, func(int) (*user, string) { return a, ch })
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
