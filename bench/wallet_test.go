package bench

import (
	"bufio"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/internal/perundtest/serve"
	"github.com/perund/perund/metrics"
	"github.com/perund/perund/node"
	"github.com/perund/perund/rpc"
	"github.com/perund/perund/rpc/rpctest"
)

// The wallet-like path (issue 16): a node set up as `perund dev` does it
// (embedded chain, alice and bob on one node, metrics), its API on a real
// loopback WebSocket, and the wallets in another process: the test binary
// run again as TestWalletClient. Each wallet keeps one connection with
// proposals, updates and channels subscribed and reads every notification;
// alice pays bob with sequential channel_send calls.

// Environment of the client process.
const (
	envWalletURL   = "PERUND_BENCH_WALLET_URL"
	envWalletAlice = "PERUND_BENCH_WALLET_ALICE"
	envWalletBob   = "PERUND_BENCH_WALLET_BOB"
)

// walletBlock is how many payments each side makes before the other's
// turn: the two paths are measured interleaved, so that the machine's
// changing load weighs on both alike.
const walletBlock = 100

// BenchmarkWalletPath: b.N payments through the wallet-like path,
// interleaved in blocks of walletBlock with as many updates of
// go-perun alone (BenchmarkGoPerunDirect's set-up: TCP+TLS, LevelDB) on
// the same chain. Reports both rates, their ratio and the latencies.
func BenchmarkWalletPath(b *testing.B) {
	ka, kb, da, db := mustKey(b), mustKey(b), mustKey(b), mustKey(b)
	ch := newChain(b, crypto.PubkeyToAddress(ka.PublicKey), crypto.PubkeyToAddress(kb.PublicKey),
		crypto.PubkeyToAddress(da.PublicKey), crypto.PubkeyToAddress(db.PublicKey))
	direct := directChannel(b, ch.Embedded, ch.Contracts, da, db)
	url := newDevServer(b, ch, ka, kb)
	w := startWallets(b, url, crypto.PubkeyToAddress(ka.PublicKey).Hex(), crypto.PubkeyToAddress(kb.PublicKey).Hex())

	wlat, dlat := newLatencies(b.N), newLatencies(b.N)
	var wall, dir time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(walletBlock, b.N-done)
		t0 := time.Now()
		for range n {
			t := time.Now()
			if err := direct(); err != nil {
				b.Fatal(err)
			}
			dlat.add(time.Since(t))
		}
		dir += time.Since(t0)
		el, ls, err := w.pay(n)
		if err != nil {
			b.Fatal(err)
		}
		wall += el
		for _, l := range ls {
			wlat.add(l)
		}
		done += n
	}
	b.StopTimer()
	wps, dps := float64(b.N)/wall.Seconds(), float64(b.N)/dir.Seconds()
	b.ReportMetric(wps, "wallet-pay/s")
	b.ReportMetric(dps, "direct-upd/s")
	b.ReportMetric(wps/dps, "ratio")
	wlat.report(b, "wallet-")
	dlat.report(b, "direct-")
}

func mustKey(b testing.TB) *ecdsa.PrivateKey {
	k, err := crypto.GenerateKey()
	require.NoError(b, err)
	return k
}

// newDevServer starts a node configured as perund dev configures it (with
// metrics), with the users of keys imported (password "pw"), and returns
// its API's URL.
func newDevServer(b testing.TB, ch *perundtest.Chain, users ...*ecdsa.PrivateKey) string {
	keys := map[string]string{}
	for _, k := range users {
		keys[perundtest.HexKey(k)] = "pw"
	}
	m := metrics.New()
	n := ch.Node(b, perundtest.NodeOptions{
		Flags:   map[string]any{"allowAccountCreation": true, "channel.challengeDuration": 60},
		Keys:    keys,
		Options: func(o *node.Options) { o.Metrics = m },
	})
	url, _ := serve.API(b, n, n.Config().RPC, func(s *rpc.Server) { require.NoError(b, s.SetMetrics(m)) })
	return url
}

// wallets is the client process.
type wallets struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startWallets runs the client process and waits until it has logged in
// both users, subscribed and opened the channel.
func startWallets(b testing.TB, url, alice, bob string) *wallets {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestWalletClient$", "-test.bench", "^$", "-test.count", "1")
	cmd.Env = append(os.Environ(), envWalletURL+"="+url, envWalletAlice+"="+alice, envWalletBob+"="+bob)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	require.NoError(b, err)
	out, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	w := &wallets{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	w.out.Buffer(make([]byte, 1<<16), 1<<24)
	b.Cleanup(func() {
		_ = in.Close() // the client process ends at the end of its input
		done := make(chan struct{})
		go func() {
			defer close(done)
			for w.out.Scan() {
			}
			_ = cmd.Wait()
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line, err := w.line()
	require.NoError(b, err)
	require.Equal(b, "ready", line)
	return w
}

// line returns the client process's next line of the protocol.
func (w *wallets) line() (string, error) {
	for w.out.Scan() {
		if l, ok := strings.CutPrefix(w.out.Text(), "wallet: "); ok {
			return l, nil
		}
	}
	if err := w.out.Err(); err != nil {
		return "", fmt.Errorf("read the client process: %w", err)
	}
	return "", errors.New("the client process ended")
}

// pay has alice make n sequential payments; it returns their total time
// and each one's latency, as the client process measured them.
func (w *wallets) pay(n int) (time.Duration, []time.Duration, error) {
	if _, err := fmt.Fprintf(w.in, "pay %d\n", n); err != nil {
		return 0, nil, fmt.Errorf("write to the client process: %w", err)
	}
	line, err := w.line()
	if err != nil {
		return 0, nil, err
	}
	var r walletResult
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		return 0, nil, fmt.Errorf("client process: %q: %w", line, err)
	}
	if r.Err != "" {
		return 0, nil, errors.New("client process: " + r.Err)
	}
	ls := make([]time.Duration, len(r.Latencies))
	for i, l := range r.Latencies {
		ls[i] = time.Duration(l)
	}
	return time.Duration(r.Elapsed), ls, nil
}

// walletResult is the client process's answer to "pay n".
type walletResult struct {
	Elapsed   int64   `json:"elapsed"`
	Latencies []int64 `json:"latencies"`
	Err       string  `json:"err,omitempty"`
}

// TestWalletClient is the client process of BenchmarkWalletPath; it is
// skipped unless that benchmark runs it. It reads "pay n" lines and
// answers each with a walletResult line.
func TestWalletClient(t *testing.T) {
	url := os.Getenv(envWalletURL)
	if url == "" {
		t.Skip("the client process of BenchmarkWalletPath")
	}
	alice, bob := rpctest.Dial(t, url), rpctest.Dial(t, url)
	for _, u := range []struct {
		c     *rpctest.Client
		addr  string
		alias string
		other string
	}{{alice, os.Getenv(envWalletAlice), "bob", os.Getenv(envWalletBob)}, {bob, os.Getenv(envWalletBob), "alice", os.Getenv(envWalletAlice)}} {
		var s struct {
			CommAddress string `json:"commAddress"`
		}
		u.c.OK("session_open", map[string]any{"account": u.addr, "password": "pw"}, &s)
		for _, topic := range []string{"proposals", "updates", "channels"} {
			u.c.OK("perun_subscribe", []string{topic}, nil)
		}
		u.c.OK("contacts_add", map[string]any{"alias": u.alias, "address": u.other, "commAddress": s.CommAddress}, nil)
	}
	// Each wallet reads every notification; bob accepts the proposal.
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := make(chan struct{})
	defer close(stop)
	var notes sync.Map
	for name, c := range map[string]*rpctest.Client{"alice": alice, "bob": bob} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for {
				select {
				case <-stop:
					notes.Store(name, n)
					return
				case m := <-c.Notes:
					n++
					r, _ := m["params"].(map[string]any)["result"].(map[string]any)
					if name == "bob" && r["status"] == "pending" && r["proposalId"] != nil {
						wg.Add(1)
						go func() {
							defer wg.Done()
							// Off the test goroutine: a failure shows as
							// alice's channel_open failing.
							if _, err := c.TryCall("proposal_respond", map[string]any{"proposalId": r["proposalId"], "accept": true}, 5*time.Minute); err != nil {
								fmt.Fprintln(os.Stderr, "wallet: bob's accept:", err)
							}
						}()
					}
				}
			}
		}()
	}
	var ch struct {
		ChannelID string `json:"channelId"`
	}
	alice.OK("channel_open", map[string]any{"peer": "bob", "balance": map[string]string{"mine": eth(10).String(), "theirs": eth(10).String()}}, &ch)
	fmt.Println("wallet: ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, err := strconv.Atoi(strings.TrimPrefix(in.Text(), "pay "))
		require.NoError(t, err)
		r := walletResult{Latencies: make([]int64, 0, n)}
		t0 := time.Now()
		for range n {
			t1 := time.Now()
			m := alice.Call("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "1"})
			r.Latencies = append(r.Latencies, int64(time.Since(t1)))
			if m["error"] != nil {
				r.Err = fmt.Sprint(m["error"])
				break
			}
		}
		r.Elapsed = int64(time.Since(t0))
		out, err := json.Marshal(r)
		require.NoError(t, err)
		fmt.Printf("wallet: %s\n", out)
	}
}
