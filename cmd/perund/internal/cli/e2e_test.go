package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/perund/perund/internal/leaktest"
)

// binary is the perund binary the tests build once (with -race when they
// run with it) and remove at the end.
var binary struct {
	once      sync.Once
	dir, path string
	err       error
}

// perundBin builds perund on first use and returns its path.
func perundBin(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		if binary.dir, binary.err = os.MkdirTemp("", "perund-cli-test-*"); binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "perund")
		args := []string{"build", "-o", binary.path}
		if raceBuild {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "github.com/perund/perund/cmd/perund")...).CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("build perund: %w\n%s", err, out)
		}
	})
	require.NoError(t, binary.err)
	return binary.path
}

// mainWrapper removes the built binary after the tests.
type mainWrapper struct{ m *testing.M }

func (w mainWrapper) Run() int {
	code := w.m.Run()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	return code
}

// TestMain fails the package's tests if goroutines are left once they have
// all finished (see internal/leaktest).
func TestMain(m *testing.M) { goleak.VerifyTestMain(mainWrapper{m}, leaktest.Ignores()...) }

// cleanEnv is the process's environment without PERUND_ variables (a
// developer's PERUND_SESSION must not leak into the tests).
func cleanEnv(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PERUND_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// devNode is a running `perund dev` on a free loopback port.
type devNode struct {
	url     string
	cmd     *exec.Cmd
	out     *syncBuffer
	exited  chan struct{}
	waitErr error
}

var rpcLine = regexp.MustCompile(`JSON-RPC:\s+(ws://\S+)`)

// startDev starts `perund dev` on 127.0.0.1:0 with a data dir of its own
// and waits for the URL it prints once its demo sessions are ready. It is
// stopped at the end of the test.
func startDev(t *testing.T, extra ...string) *devNode {
	t.Helper()
	d := &devNode{out: &syncBuffer{}, exited: make(chan struct{})}
	args := append([]string{"dev", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, extra...)
	d.cmd = exec.Command(perundBin(t), args...)
	d.cmd.Env = cleanEnv(nil)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	require.NoError(t, d.cmd.Start())
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("perund dev output:\n%s", d.out.String())
		}
	})
	deadline := time.After(3 * time.Minute)
	for {
		if m := rpcLine.FindStringSubmatch(d.out.String()); m != nil {
			d.url = m[1]
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("perund dev exited (%v):\n%s", d.waitErr, d.out.String())
		case <-deadline:
			t.Fatalf("perund dev did not start:\n%s", d.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends the node with SIGTERM (SIGKILL after a minute) and returns
// how it exited.
func (d *devNode) stop(t *testing.T) error {
	t.Helper()
	select {
	case <-d.exited:
		return d.waitErr
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(time.Minute):
		_ = d.cmd.Process.Kill()
		<-d.exited
		t.Errorf("perund dev did not stop on SIGTERM within a minute")
	}
	return d.waitErr
}

// runBin runs the perund binary with the environment vars, within a minute.
func runBin(t *testing.T, vars map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, perundBin(t), args...)
	cmd.Env = cleanEnv(vars)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{code, out.String(), errOut.String()}
}

// waitFor waits until buf holds want.
func waitFor(t *testing.T, buf *syncBuffer, want string, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(buf.String(), want) }, within, 20*time.Millisecond,
		"waited for %q, have:\n%s", want, buf)
}

// merge returns a copy of a with b's entries.
func merge(a, b map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

// sessionOf is "sessionId:token" of a session_open or session_resume
// result.
func sessionOf(t *testing.T, out string) string {
	t.Helper()
	var s struct{ SessionID, Token string }
	require.NoError(t, json.Unmarshal([]byte(out), &s), out)
	require.NotEmpty(t, s.SessionID)
	require.NotEmpty(t, s.Token)
	return s.SessionID + ":" + s.Token
}

// TestEndToEnd runs the client against a real `perund dev` whose API needs
// a token: in-process and as the built binary, calls with and without a
// session, error answers and usage errors with their exit codes, the
// method list and the bash completion built on it, and watch: a channel
// opened by alice with bob reaches alice's `watch channels`, which ends
// with exit code 0 on SIGINT; a watch whose node shuts down ends with 1.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	const nodeToken = "e2e-node-token"
	d := startDev(t, "--set", "rpc.authToken="+nodeToken, "--set", "channel.responseTimeout=30s")
	node := map[string]string{EnvURL: d.url, EnvToken: nodeToken}

	// node_info: the demo accounts.
	r := runIn(t, node, "call", "node_info")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr)
	require.True(t, strings.HasPrefix(r.stdout, "{\n  \""), "indented: %s", r.stdout)
	var info struct {
		DemoAccounts []struct{ Name, Address, Password string } `json:"demoAccounts"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &info))
	addr := map[string]string{}
	for _, a := range info.DemoAccounts {
		addr[a.Name] = a.Address
	}
	require.Equal(t, "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", addr["alice"])
	require.Equal(t, "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", addr["bob"])

	t.Run("node token", func(t *testing.T) {
		r := runIn(t, map[string]string{EnvURL: d.url}, "call", "node_info")
		require.Equal(t, 1, r.code)
		require.Empty(t, r.stdout)
		require.Contains(t, r.stderr, "the node answered 401 Unauthorized: unauthorized: node token required (give the node's rpc.authToken with -token or PERUND_TOKEN)")
		r = runIn(t, map[string]string{EnvURL: d.url, EnvToken: "wrong"}, "call", "node_info")
		require.Equal(t, 1, r.code)
		r = runIn(t, map[string]string{EnvURL: d.url, EnvToken: "wrong"}, "call", "-token", nodeToken, "node_info")
		require.Equal(t, 0, r.code, "the flag wins over the environment: %s", r.stderr)
	})

	// session_open by key=value prints the session and the export line.
	r = runIn(t, node, "call", "session_open", "account="+addr["alice"], "password=alice")
	require.Equal(t, 0, r.code, r.stderr)
	alice := sessionOf(t, r.stdout)
	require.Equal(t, "export PERUND_SESSION="+alice+"\n", r.stderr)
	asAlice := merge(node, map[string]string{EnvSession: alice})

	// -account with the password asked for (no PERUND_PASSWORD).
	var out, errOut syncBuffer
	var prompts []string
	env := testEnv(node, &out, &errOut)
	env.ReadPassword = func(prompt string) (string, error) {
		prompts = append(prompts, prompt)
		return "bob", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.Equal(t, 0, Run(ctx, []string{"call", "-account", addr["bob"], "session_info"}, env), errOut.String())
	require.Equal(t, []string{"Password of " + addr["bob"] + ": "}, prompts)
	var bobInfo struct{ Address string }
	require.NoError(t, json.Unmarshal([]byte(out.String()), &bobInfo))
	require.Equal(t, addr["bob"], bobInfo.Address)
	bob := strings.TrimSpace(strings.TrimPrefix(errOut.String(), "export PERUND_SESSION="))
	require.Regexp(t, `^0x[0-9a-f]+:0x[0-9a-f]+$`, bob)
	asBob := merge(node, map[string]string{EnvSession: bob})

	t.Run("calls", func(t *testing.T) {
		tests := []struct {
			name   string
			vars   map[string]string
			args   []string
			code   int
			stdout string // JSON the result must equal
			stderr string // part of stderr
			// errCode and errField: stderr is the error object alone,
			// with this code and data.field.
			errCode  int64
			errField string
			binary   bool // run the built binary, not in-process
		}{
			{name: "channel_list by -session", vars: node, args: []string{"call", "-session", alice, "channel_list"}, stdout: `[]`},
			{name: "channel_list by PERUND_SESSION, flags after the method", vars: merge(asAlice, map[string]string{EnvURL: "127.0.0.1:1"}),
				args: []string{"call", "channel_list", "state=open", "-url", d.url}, stdout: `[]`},
			{name: "-account with PERUND_PASSWORD", vars: merge(node, map[string]string{EnvPassword: "alice", EnvSession: "ignored:by-account"}),
				args: []string{"call", "-account", addr["alice"], "contacts_get", "alias=bob"}, stderr: "export PERUND_SESSION=" + alice},
			{name: "JSON params", vars: asAlice, args: []string{"call", "chain_balance", `{"asset":"PRN"}`},
				stdout: `{"address":"` + addr["alice"] + `","asset":"PRN","balance":"1000000000000000000000"}`},
			{name: "bad param (binary)", vars: asAlice, args: []string{"call", "channel_get", "channelId=nope"}, code: 1, binary: true,
				errCode: -32602, errField: "channelId"},
			{name: "wrong param type", vars: asAlice, args: []string{"call", "session_open", "account=" + addr["alice"], "password=alice", "manualAccept=1"}, code: 1,
				stderr: `"code": -32602`},
			{name: "usage error (binary)", vars: asAlice, args: []string{"call", "channel_get", "channelId"}, code: 2, binary: true,
				stderr: `perund call: param "channelId": want key=value`},
			{name: "unknown method", vars: node, args: []string{"call", "channel_teleport"}, code: 1,
				errCode: -32601},
			{name: "no session", vars: node, args: []string{"call", "channel_list"}, code: 1,
				errCode: 1001},
			{name: "wrong session", vars: node, args: []string{"call", "-session", "0x00:0x00", "channel_list"}, code: 1,
				stderr: "perund call: resume the session of -session or PERUND_SESSION:\n{\n  \"code\": 1001"},
			{name: "wrong password", vars: merge(node, map[string]string{EnvPassword: "nope"}), args: []string{"call", "-account", addr["bob"], "session_info"}, code: 1,
				stderr: "perund call: open a session of -account " + addr["bob"] + ":\n{\n  \"code\": 1001"},
			{name: "watch a bad topic", vars: asAlice, args: []string{"watch", "channels", "gossip"}, code: 1,
				stderr: "perund watch: subscribe to gossip:\n{\n  \"code\": -32602"},
			{name: "watch without session", vars: node, args: []string{"watch", "channels"}, code: 1,
				stderr: "perund watch: subscribe to channels:\n{\n  \"code\": 1001"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				var r result
				if tc.binary {
					r = runBin(t, tc.vars, tc.args...)
				} else {
					r = runIn(t, tc.vars, tc.args...)
				}
				require.Equal(t, tc.code, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
				if tc.code != 0 {
					require.Empty(t, r.stdout)
				} else {
					require.True(t, json.Valid([]byte(r.stdout)), r.stdout)
				}
				if tc.stdout != "" {
					require.JSONEq(t, tc.stdout, r.stdout)
				}
				if tc.errCode != 0 {
					var e struct {
						Code    int64
						Message string
						Data    struct{ Field string }
					}
					require.NoError(t, json.Unmarshal([]byte(r.stderr), &e), "stderr is the error object: %s", r.stderr)
					require.Equal(t, tc.errCode, e.Code)
					require.NotEmpty(t, e.Message)
					require.Equal(t, tc.errField, e.Data.Field)
				}
				require.Contains(t, r.stderr, tc.stderr)
			})
		}
	})

	t.Run("list-methods and completion", func(t *testing.T) {
		// A broken PERUND_SESSION does not matter: rpc_discover needs none.
		r := runIn(t, merge(node, map[string]string{EnvSession: "broken"}), "call", "--list-methods")
		require.Equal(t, 0, r.code, r.stderr)
		names := strings.Fields(r.stdout)
		require.Contains(t, names, "node_info")
		require.Contains(t, names, "session_open")
		for _, n := range names {
			require.Regexp(t, `^[a-z]+_[A-Za-z]+$`, n)
		}

		script := runBin(t, nil, "completion", "bash")
		require.Equal(t, 0, script.code, script.stderr)
		file := filepath.Join(t.TempDir(), "perund.bash")
		require.NoError(t, os.WriteFile(file, []byte(script.stdout), 0o600))
		bin := perundBin(t)
		complete := func(vars map[string]string, line string) []string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", "--norc", "--noprofile", "-c",
				`source "$1"; COMP_LINE=$2; COMP_POINT=${#COMP_LINE}; _perund; printf '%s\n' "${COMPREPLY[@]}"`, "bash", file, bin+" "+line)
			cmd.Env = cleanEnv(vars)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			return strings.Fields(string(out))
		}
		require.Equal(t, []string{"channel_close", "channel_forceClose", "channel_get", "channel_list", "channel_open", "channel_request", "channel_send"},
			complete(node, "call chan"))
		require.Equal(t, []string{"node_info"}, complete(nil, "call -url "+d.url+" -token="+nodeToken+" node_"), "the typed -url and -token reach the node")
		require.Equal(t, names, complete(node, "call -timeout 10s "))
		require.Empty(t, complete(node, "call node_info "))
		require.Equal(t, []string{"proposals", "updates", "channels", "disputes"}, complete(nil, "watch "))
		require.Equal(t, []string{"call"}, complete(nil, "ca"))
		require.Contains(t, complete(nil, "call -"), "-list-methods")
	})

	// The timeout of a call is the x-timeout of its method in the node's
	// document plus the margin: channel_send's (the peer class), node_info's
	// the quick class; -timeout overrides it.
	t.Run("timeouts from rpc_discover", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := Dial(ctx, d.url, nodeToken)
		require.NoError(t, err)
		defer c.Close()
		// The document as the node serves it, decoded apart from the client.
		raw, err := c.Call(ctx, "rpc_discover", nil)
		require.NoError(t, err)
		var served struct {
			Methods []struct {
				Name     string
				XTimeout struct {
					Class   string
					Seconds int64
				} `json:"x-timeout"`
			}
		}
		require.NoError(t, json.Unmarshal(raw, &served))
		seconds := map[string]int64{}
		classSeconds := map[string]map[int64]bool{}
		for _, m := range served.Methods {
			require.Contains(t, []string{"quick", "peer", "chain"}, m.XTimeout.Class, m.Name)
			require.Positive(t, m.XTimeout.Seconds, m.Name)
			seconds[m.Name] = m.XTimeout.Seconds
			if classSeconds[m.XTimeout.Class] == nil {
				classSeconds[m.XTimeout.Class] = map[int64]bool{}
			}
			classSeconds[m.XTimeout.Class][m.XTimeout.Seconds] = true
		}
		require.Len(t, classSeconds["quick"], 1, "the quick class has one bound: %v", classSeconds)
		var quick int64
		for s := range classSeconds["quick"] {
			quick = s
		}
		require.Contains(t, seconds, "channel_send")
		require.Greater(t, seconds["channel_send"], quick, "channel_send waits for the peer: longer than the quick class")

		var o options
		got, err := o.callTimeout(ctx, c, "channel_send")
		require.NoError(t, err)
		require.Equal(t, time.Duration(seconds["channel_send"])*time.Second+TimeoutMargin, got)
		got, err = o.callTimeout(ctx, c, "node_info")
		require.NoError(t, err)
		require.Equal(t, time.Duration(quick)*time.Second+TimeoutMargin, got, "node_info: the quick class")
		got, err = o.callTimeout(ctx, c, "channel_teleport")
		require.NoError(t, err)
		require.Equal(t, StepTimeout, got, "a method the node does not have: it answers -32601 at once")
		doc, err := fetchDocument(ctx, c, StepTimeout)
		require.NoError(t, err)
		for name, s := range seconds {
			got, err := doc.callTimeout(name)
			require.NoError(t, err)
			require.Equal(t, time.Duration(s)*time.Second+TimeoutMargin, got, name)
		}
		o.timeout = 7 * time.Second
		got, err = o.callTimeout(ctx, c, "channel_send")
		require.NoError(t, err)
		require.Equal(t, 7*time.Second, got, "-timeout overrides the document")
	})

	// alice watches her channels with the binary; bob accepts her channel.
	var watchOut, watchErr syncBuffer
	watch := exec.Command(perundBin(t), "watch", "channels")
	watch.Env = cleanEnv(asAlice)
	watch.Stdout, watch.Stderr = &watchOut, &watchErr
	require.NoError(t, watch.Start())
	watchDone := make(chan struct{})
	var watchExit error
	go func() {
		watchExit = watch.Wait()
		close(watchDone)
	}()
	t.Cleanup(func() {
		select {
		case <-watchDone:
		default:
			_ = watch.Process.Kill()
			<-watchDone
		}
	})
	waitFor(t, &watchErr, "perund watch: watching channels (subscription 0x", 30*time.Second)

	opened := make(chan result, 1)
	go func() {
		opened <- runIn(t, asAlice, "call", "channel_open", "peer=bob", "balance.mine=1000000000000000", "balance.theirs=0")
	}()
	var proposalID string
	require.Eventually(t, func() bool {
		r := runIn(t, asBob, "call", "proposal_list")
		var list []struct{ ProposalID string }
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) == 0 {
			return false
		}
		proposalID = list[0].ProposalID
		return true
	}, time.Minute, 100*time.Millisecond, "bob sees alice's proposal")
	r = runIn(t, asBob, "call", "proposal_respond", "proposalId="+proposalID, "accept=true")
	require.Equal(t, 0, r.code, r.stderr)
	var open result
	select {
	case open = <-opened:
	case <-time.After(2 * time.Minute):
		t.Fatal("channel_open did not return")
	}
	require.Equal(t, 0, open.code, open.stderr)
	var ch struct{ ChannelID, State string }
	require.NoError(t, json.Unmarshal([]byte(open.stdout), &ch))
	require.Equal(t, "open", ch.State)

	waitFor(t, &watchOut, ch.ChannelID, 30*time.Second)
	sc := bufio.NewScanner(strings.NewReader(watchOut.String()))
	seen := false
	for sc.Scan() {
		var line struct {
			Topic, Subscription string
			Result              struct{ ChannelID, State string }
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line), "one JSON object per line: %s", sc.Text())
		require.Equal(t, "channels", line.Topic)
		require.Regexp(t, `^0x[0-9a-f]+$`, line.Subscription)
		seen = seen || line.Result.ChannelID == ch.ChannelID
	}
	require.True(t, seen)
	require.NoError(t, watch.Process.Signal(syscall.SIGINT))
	select {
	case <-watchDone:
		require.NoError(t, watchExit, "watch exits 0 on SIGINT: %s", watchErr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end on SIGINT")
	}

	// A watch whose node goes away ends with exit code 1.
	var bobOut, bobErr syncBuffer
	wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer wcancel()
	bobDone := make(chan int, 1)
	go func() {
		bobDone <- Run(wctx, []string{"watch", "proposals", "updates"}, testEnv(asBob, &bobOut, &bobErr))
	}()
	waitFor(t, &bobErr, "perund watch: watching updates", 30*time.Second)
	require.NoError(t, d.stop(t), "perund dev exits 0 on SIGTERM")
	require.NotContains(t, d.out.String(), "DATA RACE")
	select {
	case code := <-bobDone:
		require.Equal(t, 1, code)
		require.Contains(t, bobErr.String(), "perund watch: the node closed the connection (1001 going away: server shutting down)")
	case <-time.After(time.Minute):
		t.Fatal("watch did not end when its node stopped")
	}
}
