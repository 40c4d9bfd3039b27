package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	gethrpc "github.com/ethereum/go-ethereum/rpc"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/internal/pgtest"
	"github.com/perund/perund/rpc/rpctest"
)

// pg is the PostgreSQL cluster of the failover tests (stopped by TestMain).
var pg = pgtest.NewCluster()

// standbyMark in newProc's extra YAML (a comment: perund ignores it) makes
// start wait for the standby's /healthz instead of a ready node.
const standbyMark = "# standby\n"

// failoverLease is cluster.leaseTimeout in the failover tests: 4 s, or
// IT_FAILOVER_LEASE (e.g. 10s, the default, for docs/benchmarks.md).
func failoverLease(t *testing.T) time.Duration {
	if v := os.Getenv("IT_FAILOVER_LEASE"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "IT_FAILOVER_LEASE")
		return d
	}
	return 4 * time.Second
}

// clusterOf starts alice's node as a cluster of two perund processes on
// one new PostgreSQL database: alice-1, which takes the lease and serves,
// and alice-2, standing by. Each has its own data dir, ports and
// watchtower account (two machines); alice's password is in each one's
// sessions.passwordDir, so her open session comes back on the standby.
func clusterOf(t *testing.T, a devChain, c chain.Contracts) (active, standby *proc) {
	url := pg.Database(t)
	k, err := crypto.HexToECDSA(keyAlice)
	require.NoError(t, err)
	alice := strings.ToLower(crypto.PubkeyToAddress(k.PublicKey).Hex())
	// newProc imports alice's key with the process's name as password.
	member := func(name string, extra ...string) *proc {
		pwDir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(pwDir, alice), []byte(name), 0o600))
		yaml := fmt.Sprintf("store:\n  url: %s\ncluster:\n  enabled: true\n  leaseTimeout: %s\nsessions:\n  passwordDir: %s\n", url, failoverLease(t), pwDir)
		return newProc(t, name, keyAlice, a, c, append([]string{yaml}, extra...)...)
	}
	active = member("alice-1")
	standby = member("alice-2", standbyMark)
	require.Equal(t, http.StatusServiceUnavailable, health(standby), "alice-2 stands by")
	return active, standby
}

// resumeOn waits until p serves (its /healthz says ready), then resumes
// the session id:token on it; it returns the session and when the first
// call (session_resume, then channel_get of ch) succeeded.
func resumeOn(t *testing.T, p *proc, id, token, ch string) (*session, time.Time) {
	deadline := time.Now().Add(3 * time.Minute) // a hang guard, not a speed bound
	for health(p) != http.StatusOK {
		require.True(t, time.Now().Before(deadline), "%s did not take over:\n%s", p.name, p.log.String())
		time.Sleep(20 * time.Millisecond)
	}
	s := &session{Client: dialSession(t, p)}
	s.OK("session_resume", map[string]any{"sessionId": id, "token": token}, s)
	var v channelView
	s.OK("channel_get", map[string]any{"channelId": ch}, &v)
	return s, time.Now()
}

// dialSession connects to p's API.
func dialSession(t *testing.T, p *proc) *rpctest.Client { return rpctest.Dial(t, p.rpcURL) }

// remarshal decodes a JSON value decoded as any into out.
func remarshal(v, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// lineTime is the time of a log line of perund's text format.
func lineTime(line string) (time.Time, bool) {
	v, ok := strings.CutPrefix(line, "time=")
	if !ok {
		return time.Time{}, false
	}
	v, _, _ = strings.Cut(v, " ")
	at, err := time.Parse(time.RFC3339Nano, v)
	return at, err == nil
}

// logTime is the time of the first line of log that contains msg.
func logTime(t *testing.T, log, msg string) time.Time {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, msg) {
			at, ok := lineTime(line)
			require.True(t, ok, line)
			return at
		}
	}
	t.Fatalf("no %q in the log", msg)
	return time.Time{}
}

// sessionKey is what a client keeps to resume a session.
type sessionKey struct {
	SessionID string `json:"sessionId"`
	Token     string `json:"token"`
}

// loginKeep opens p's user's session and returns it with its id and token.
func loginKeep(t *testing.T, p *proc) (*session, sessionKey) {
	s := &session{Client: dialSession(t, p)}
	var key sessionKey
	s.OK("session_open", map[string]any{"account": p.addr.Hex(), "password": p.pw}, &key)
	s.OK("session_info", nil, s)
	return s, key
}

// stream sends payments of amount on ch through s until a call fails; it
// returns how many were answered with success and the failing answer.
func stream(s *session, ch string, amount int) (int, map[string]any) {
	n := 0
	for {
		r := s.Call("channel_send", map[string]any{"channelId": ch, "amount": strconv.Itoa(amount)})
		if r["error"] != nil {
			return n, r["error"].(map[string]any)
		}
		n++
	}
}

// seedOf is the seed of a test's random delays: IT_SEED, or the clock. A
// failed test names it, so that a run can be repeated.
func seedOf(t *testing.T) int64 {
	seed := time.Now().UnixNano()
	if s := os.Getenv("IT_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, "IT_SEED")
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("random delays from seed %d: repeat with IT_SEED=%d go test ./integration -run '^%s$'", seed, seed, t.Name())
		}
	})
	return seed
}

// mineAfter is alice's balance in a channel opened with 10 ETH each after
// version payments of amount wei from her.
func mineAfter(version uint64, amount int) string {
	return new(big.Int).Sub(eth(10), new(big.Int).SetUint64(version*uint64(amount))).String()
}

// agreed waits until alice's session sa and bob's sb hold channel ch at
// one version, and returns both views; what names the moment in a
// failure.
func agreed(t *testing.T, sa, sb *session, ch, what string) (av, bv channelView) {
	t.Helper()
	id := map[string]any{"channelId": ch}
	deadline := time.Now().Add(30 * time.Second) // a hang guard, not a speed bound
	for {
		sa.OK("channel_get", id, &av)
		sb.OK("channel_get", id, &bv)
		if av.Version == bv.Version {
			return av, bv
		}
		require.True(t, time.Now().Before(deadline), "%s: alice at %d, bob at %d", what, av.Version, bv.Version)
		time.Sleep(20 * time.Millisecond)
	}
}

// failoverPair is the failover tests' set-up: alice on a cluster of two
// processes (clusterOf) with a session kept for resuming it on the
// standby, bob on a node of his own, and a channel between them (10 ETH
// each).
type failoverPair struct {
	ethc                *gethrpc.Client
	alice1, alice2, bob *proc
	sa, sb              *session // alice's session on alice1, bob's
	key                 sessionKey
	ch                  string // the channel's id
}

func newFailoverPair(t *testing.T) *failoverPair {
	a := startAnvil(t)
	c := deploy(t, a)
	p := &failoverPair{ethc: a.rpc(t), bob: newProc(t, "bob", keyBob, a, c)}
	p.alice1, p.alice2 = clusterOf(t, a, c)
	p.sa, p.key = loginKeep(t, p.alice1)
	p.sb = p.bob.login(t)
	p.ch = openBetween(t, p.sa, p.alice1.addr, p.sb, p.bob.addr, "bob").ChannelID
	return p
}

// resume resumes alice's session on the standby (resumeOn).
func (p *failoverPair) resume(t *testing.T) (*session, time.Time) {
	return resumeOn(t, p.alice2, p.key.SessionID, p.key.Token, p.ch)
}

// TestFailoverPayments (issue 14.5): alice on a cluster of two perund
// processes on one PostgreSQL database, bob on a node of his own; a stream
// of payments from alice, and kill -9 of the active process at a random
// moment. The standby takes the lease, restores alice's channel and her
// session (same id and token), and serves: every payment that was answered
// survives (alice's restored version and bob's agree and count them), the
// stream goes on after the client resumed on the standby, and the
// cooperative close pays alice exactly her share on-chain. The time from
// the kill to the first successful call on the standby is logged (see
// docs/benchmarks.md). IT_SEED repeats a run's random delay.
func TestFailoverPayments(t *testing.T) {
	rng := rand.New(rand.NewSource(seedOf(t)))
	p := newFailoverPair(t)
	const amount = 1000

	answered := make(chan int, 1)
	go func() {
		n, _ := stream(p.sa, p.ch, amount)
		answered <- n
	}()
	time.Sleep(time.Duration(500+rng.Intn(1500)) * time.Millisecond)
	killed := time.Now()
	p.alice1.kill()
	total := perundtest.Recv(t, answered, time.Minute, "the stream ends with the kill")
	require.Positive(t, total, "payments were answered before the kill")

	sa2, first := p.resume(t)
	took := first.Sub(killed)
	t.Logf("kill -9 after %d answered payments; first successful call on the standby %.2f s after the kill (cluster.leaseTimeout %s)",
		total, took.Seconds(), failoverLease(t))
	if f := os.Getenv("IT_FAILOVER_OUT"); f != "" {
		_ = os.WriteFile(f, []byte(fmt.Sprintf("%.3f\n", took.Seconds())), 0o600)
	}
	av, bv := agreed(t, sa2, p.sb, p.ch, "after the takeover")
	require.Equal(t, "open", av.State)
	require.GreaterOrEqual(t, av.Version, uint64(total), "every answered payment survives")
	require.Equal(t, mineAfter(av.Version, amount), av.Balance["mine"])
	require.Equal(t, mineAfter(av.Version, amount), bv.Balance["theirs"])

	// The stream goes on on the standby.
	for range 5 {
		sa2.OK("channel_send", map[string]any{"channelId": p.ch, "amount": strconv.Itoa(amount)}, &av)
	}
	closeExact(t, p.ethc, sa2, p.sb, p.alice2, p.ch, mineAfter(av.Version, amount))
}

// closeExact closes ch cooperatively from alice's session sa (bob agrees)
// and checks that the close pays alice mine on-chain, to the wei less the
// gas of the close's transactions.
func closeExact(t *testing.T, ethc *gethrpc.Client, sa, sb *session, alice *proc, ch, mine string) {
	id := map[string]any{"channelId": ch}
	sb.OK("perun_subscribe", []string{"updates"}, nil)
	accepted := acceptAsync(t, sb, func(r map[string]any) bool { return r["kind"] == "close" && r["status"] == "pending" })
	defer accepted()
	var before, closed channelView
	sa.OK("channel_get", id, &before)
	start := balanceOf(t, ethc, alice.addr)
	sa.OK("channel_close", id, &closed)
	require.Equal(t, "closed", closed.State)
	require.Equal(t, mine, closed.Balance["mine"])
	var closeTxs []string
	for _, h := range closed.TxHashes {
		if !slices.Contains(before.TxHashes, h) {
			closeTxs = append(closeTxs, h)
		}
	}
	m, _ := new(big.Int).SetString(mine, 10)
	want := new(big.Int).Add(start, m)
	want.Sub(want, gasCost(t, ethc, closeTxs))
	require.Equal(t, want.String(), balanceOf(t, ethc, alice.addr).String())
}

// TestFailoverFencing (issue 14.3): the active process of alice's cluster
// is paused (SIGSTOP) with a payment in flight, past its lease; the
// standby takes over and payments go on there. Resumed (SIGCONT), the old
// process must not act: it exits with code 3 at once (its lease is lost),
// its API is gone, and whatever it had in flight reached bob at most as a
// state from before the takeover: bob's and the new active's channel
// agree, payments go on and the close pays exactly.
func TestFailoverFencing(t *testing.T) {
	p := newFailoverPair(t)
	alice1, alice2, sa, sb := p.alice1, p.alice2, p.sa, p.sb
	id := map[string]any{"channelId": p.ch}
	const amount = 1000
	for range 3 {
		sa.OK("channel_send", map[string]any{"channelId": p.ch, "amount": strconv.Itoa(amount)}, nil)
	}

	inFlight := make(chan map[string]any, 1)
	go func() {
		inFlight <- sa.Call("channel_send", map[string]any{"channelId": p.ch, "amount": strconv.Itoa(amount)})
	}()
	time.Sleep(2 * time.Millisecond)
	require.NoError(t, alice1.cmd.Process.Signal(syscall.SIGSTOP))
	paused := time.Now()

	sa2, _ := p.resume(t)
	t.Logf("the standby served %.2f s after the pause", time.Since(paused).Seconds())
	av, bv := agreed(t, sa2, sb, p.ch, "after the takeover")
	takeover := av.Version
	for range 3 {
		sa2.OK("channel_send", map[string]any{"channelId": p.ch, "amount": strconv.Itoa(amount)}, &av)
	}

	// Resume the old active process: it must stop, not sign.
	require.NoError(t, alice1.cmd.Process.Signal(syscall.SIGCONT))
	exited := make(chan error, 1)
	go func() { exited <- alice1.cmd.Wait() }()
	select {
	case err := <-exited:
		var ee interface{ ExitCode() int }
		require.ErrorAs(t, err, &ee, "alice-1 exits with an error code")
		require.Equal(t, 3, ee.ExitCode(), "alice-1 exits because it lost the lease:\n%s", alice1.log.String())
	case <-time.After(time.Minute): // a hang guard only
		t.Fatalf("alice-1 went on after SIGCONT:\n%s", alice1.log.String())
	}
	alice1.cmd = nil
	require.Contains(t, alice1.log.String(), "cluster lease lost")
	require.Equal(t, 0, health(alice1), "alice-1's API is gone")
	if r := perundtest.Recv(t, inFlight, time.Minute, "the payment in flight returns"); r["error"] == nil {
		var v channelView
		require.NoError(t, remarshal(r["result"], &v))
		require.LessOrEqual(t, v.Version, takeover, "a payment alice-1 answered was signed before the takeover")
	}

	// alice-1 sent nothing after the takeover: no message to a peer (a
	// signed update or its acceptance) and no transaction in its log from
	// then on.
	taken := logTime(t, alice2.log.String(), "cluster lease taken")
	for _, line := range strings.Split(alice1.log.String(), "\n") {
		at, ok := lineTime(line)
		if !ok || at.Before(taken) {
			continue
		}
		for _, sent := range []string{"ublishing message", "transaction sent"} {
			require.NotContains(t, line, sent, "alice-1 acted after alice-2 took the lease")
		}
	}

	// Nothing of alice-1 reached bob after the takeover: bob agrees with
	// the new active, and payments and the close go on.
	sb.OK("channel_get", id, &bv)
	require.Equal(t, av.Version, bv.Version)
	require.Equal(t, av.Balance["mine"], bv.Balance["theirs"])
	sa2.OK("channel_send", map[string]any{"channelId": p.ch, "amount": strconv.Itoa(amount)}, &av)
	want := mineAfter(av.Version, amount)
	require.Equal(t, want, av.Balance["mine"])
	closeExact(t, p.ethc, sa2, sb, alice2, p.ch, want)
}

// TestStandbyStops: a standby answers /healthz with 503 {"status":"standby"}
// and every other request with 503 while the active process serves, and
// exits 0 on SIGTERM without ever taking the lease.
func TestStandbyStops(t *testing.T) {
	a := startAnvil(t)
	c := deploy(t, a)
	active, standby := clusterOf(t, a, c)
	resp, err := http.Get(standby.http + "/healthz")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.JSONEq(t, `{"status":"standby"}`, string(body))
	resp, err = http.Get(standby.http + "/rpc")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, http.StatusOK, health(active))
	standby.stop(t) // exit 0, checked by stop
	require.Equal(t, http.StatusOK, health(active))
}
