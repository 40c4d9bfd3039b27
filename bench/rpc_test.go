package bench

import (
	"crypto/ecdsa"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/internal/perundtest/serve"
	"github.com/perund/perund/node"
	"github.com/perund/perund/rpc/rpctest"
)

// server is one perund node with its API on a real WebSocket.
type server struct {
	node *node.Node
	url  string
}

func newServer(b testing.TB, ch *perundtest.Chain) *server {
	return newServerWith(b, ch, nil)
}

// newServerWith is newServer with more configuration keys (e.g.
// store.url).
func newServerWith(b testing.TB, ch *perundtest.Chain, extra map[string]any) *server {
	flags := map[string]any{
		"channel.challengeDuration": 100000, "channel.responseTimeout": "30s", "channel.autoAcceptClose": true,
		"rpc.maxConnections": 5000, "rpc.maxPending": 256,
	}
	for k, v := range extra {
		flags[k] = v
	}
	n := ch.Node(b, perundtest.NodeOptions{Flags: flags})
	url, _ := serve.API(b, n, n.Config().RPC, nil)
	return &server{node: n, url: url}
}

type user struct {
	key  *ecdsa.PrivateKey
	addr common.Address
	c    *rpctest.Client
	comm string
}

func newUsers(b testing.TB, n int) []*user {
	us := make([]*user, n)
	for i := range us {
		k, err := crypto.GenerateKey()
		require.NoError(b, err)
		us[i] = &user{key: k, addr: crypto.PubkeyToAddress(k.PublicKey)}
	}
	return us
}

func (u *user) login(b testing.TB, s *server) {
	u.dial(b, s)
	u.openSession(b)
}

// dial imports the user's key into s and connects the user's client.
func (u *user) dial(b testing.TB, s *server) {
	_, err := s.node.Keys().Import(u.key, "pw")
	require.NoError(b, err)
	u.c = rpctest.Dial(b, s.url)
}

// openSession logs the connected user in.
func (u *user) openSession(b testing.TB) {
	var r struct {
		CommAddress string `json:"commAddress"`
	}
	u.c.OK("session_open", map[string]any{"account": u.addr.Hex(), "password": "pw"}, &r)
	u.comm = r.CommAddress
}

// setupPairs starts two nodes on one chain and opens a channel between
// each of n alices on node A and n bobs on node B.
func setupPairs(b testing.TB, n int) (alices, bobs []*user, channels []string) {
	return setupPairsWith(b, n, nil, nil)
}

// setupPairsWith is setupPairs with more configuration keys for node A
// and node B.
func setupPairsWith(b testing.TB, n int, extraA, extraB map[string]any) (alices, bobs []*user, channels []string) {
	alices, bobs = newUsers(b, n), newUsers(b, n)
	var addrs []common.Address
	for i := 0; i < n; i++ {
		addrs = append(addrs, alices[i].addr, bobs[i].addr)
	}
	ch := newChain(b, addrs...)
	na, nb := newServerWith(b, ch, extraA), newServerWith(b, ch, extraB)
	for i := 0; i < n; i++ {
		alices[i].login(b, na)
		bobs[i].login(b, nb)
		alices[i].c.OK("contacts_add", map[string]any{"alias": "bob", "address": bobs[i].addr.Hex(), "commAddress": bobs[i].comm}, nil)
		bobs[i].c.OK("contacts_add", map[string]any{"alias": "alice", "address": alices[i].addr.Hex(), "commAddress": alices[i].comm}, nil)
	}
	channels = make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			channels[i] = open(b, alices[i], bobs[i])
		}(i)
	}
	wg.Wait()
	return alices, bobs, channels
}

func open(b testing.TB, a, bob *user) string {
	var sub string
	bob.c.OK("perun_subscribe", []string{"proposals"}, &sub)
	accepted := perundtest.Async(func() error {
		p, err := bob.c.TryNote(time.Minute, func(r map[string]any) bool { return r["status"] == "pending" })
		if err == nil {
			_, err = bob.c.TryCall("proposal_respond", map[string]any{"proposalId": p["proposalId"], "accept": true}, 5*time.Minute)
		}
		return err
	})
	var ch struct {
		ChannelID string `json:"channelId"`
	}
	a.c.OK("channel_open", map[string]any{"peer": "bob", "balance": map[string]string{"mine": eth(10).String(), "theirs": eth(10).String()}}, &ch)
	require.NoError(b, perundtest.Recv(b, accepted, 6*time.Minute, "bob accepts"))
	bob.c.OK("perun_unsubscribe", []string{sub}, nil)
	return ch.ChannelID
}

// BenchmarkRPCPayment: channel_send calls from a WebSocket client to node
// A, paying through node B (auto-accepted). Reports the latency of the call
// and of bob's channels notification after alice's send started.
func BenchmarkRPCPayment(b *testing.B) {
	alices, bobs, chs := setupPairs(b, 1)
	a, bob := alices[0], bobs[0]
	bob.c.OK("perun_subscribe", []string{"channels"}, nil)
	var mu sync.Mutex
	started := make(map[float64]time.Time, b.N)
	notes := newLatencies(b.N)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case n := <-bob.c.Notes:
				r := n["params"].(map[string]any)["result"].(map[string]any)
				v, _ := r["version"].(float64)
				mu.Lock()
				t0, ok := started[v]
				mu.Unlock()
				if ok {
					notes.add(time.Since(t0))
				}
			}
		}
	}()
	calls := newLatencies(b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		mu.Lock()
		started[float64(i+1)] = t0
		mu.Unlock()
		m := a.c.Call("channel_send", map[string]any{"channelId": chs[0], "amount": "1"})
		calls.add(time.Since(t0))
		if m["error"] != nil {
			b.Fatal(m["error"])
		}
	}
	b.StopTimer()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	perundtest.Recv(b, done, time.Minute, "the notification reader")
	calls.report(b, "send-")
	notes.report(b, "notify-")
}

// BenchmarkRPCPaymentParallel: N channels between N user pairs paying
// concurrently through the API; throughput as N grows.
func BenchmarkRPCPaymentParallel(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("channels=%d", n), func(b *testing.B) {
			alices, _, chs := setupPairs(b, n)
			lat := sendConcurrently(b, n, func(i int) (*user, string) { return alices[i], chs[i] })
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "payments/s")
			lat.report(b, "send-")
		})
	}
}

// sendConcurrently makes b.N channel_send calls of 1 wei from n senders at
// once, sender i calling as sender(i) says on the channel it names, each
// call waiting for its answer; the timer runs from the first call to the
// last answer. It returns the calls' latencies.
func sendConcurrently(b *testing.B, n int, sender func(i int) (*user, string)) *latencies {
	lat := newLatencies(b.N)
	b.ResetTimer()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		count := b.N / n
		if i < b.N%n {
			count++
		}
		u, ch := sender(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < count; j++ {
				t0 := time.Now()
				m := u.c.Call("channel_send", map[string]any{"channelId": ch, "amount": "1"})
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
	return lat
}

// BenchmarkMemory: heap held per session and per open channel (both sides
// of each channel are on the same machine: a channel costs two sessions'
// worth of channel state). One op opens one pair of sessions and a channel.
func BenchmarkMemory(b *testing.B) {
	us := newUsers(b, 2*b.N)
	var addrs []common.Address
	for _, u := range us {
		addrs = append(addrs, u.addr)
	}
	ch := newChain(b, addrs...)
	na, nb := newServer(b, ch), newServer(b, ch)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	// The clients (each with a large notification buffer of the test
	// kit's) connect before the baseline: only the node's share counts.
	for i := 0; i < b.N; i++ {
		us[2*i].dial(b, na)
		us[2*i+1].dial(b, nb)
	}
	b.ResetTimer()
	h0 := heap()
	for _, u := range us {
		u.openSession(b)
	}
	h1 := heap()
	for i := 0; i < b.N; i++ {
		a, bob := us[2*i], us[2*i+1]
		a.c.OK("contacts_add", map[string]any{"alias": "bob", "address": bob.addr.Hex(), "commAddress": bob.comm}, nil)
		open(b, a, bob)
	}
	h2 := heap()
	b.StopTimer()
	b.ReportMetric(float64(int64(h1)-int64(h0))/float64(2*b.N)/1024, "KiB/session")
	b.ReportMetric(float64(int64(h2)-int64(h1))/float64(b.N)/1024, "KiB/channel")
	b.ReportMetric(float64(runtime.NumGoroutine())/float64(2*b.N), "goroutines/session")
}
