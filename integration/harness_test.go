// Package integration runs perund processes against a real dev chain
// (anvil; geth --dev in geth_test.go) and drives them over their WebSocket
// APIs.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	gethrpc "github.com/ethereum/go-ethereum/rpc"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/config"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/rpc/rpctest"
)

// anvil's well-known dev keys (mnemonic "test test … junk"): #0 deploys,
// #1 is alice, #2 is bob, #3 carol.
const (
	keyDeployer = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
	keyAlice    = perundtest.KeyAlice
	keyBob      = perundtest.KeyBob
	// keyCarol (#3) is a second user of bob's node in some tests.
	keyCarol  = "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
	challenge = 60 // seconds
)

var (
	perundBin string
	anvilBin  string
)

// skipEnv, set to anything, skips the whole suite (as -short does).
const skipEnv = "PERUND_SKIP_INTEGRATION"

// noTestsToRun is the line of a test binary's output after which go test
// writes "[no tests to run]" beside a passing package, where its other
// output is shown only with -v: a skipped suite is seen in a run of
// ./... as well.
const noTestsToRun = "testing: warning: no tests to run"

// skipRequested reports whether the suite is to be skipped: go test
// -short, or PERUND_SKIP_INTEGRATION set (never under CI).
func skipRequested() bool {
	return os.Getenv("CI") == "" && (testing.Short() || os.Getenv(skipEnv) != "")
}

// missingTool ends the test binary when a tool the suite needs is not
// there: it fails (under CI and wherever the skip was not asked for), so
// that a run without anvil or geth is never an "ok".
func missingTool(what string) {
	fmt.Fprintf(os.Stderr, "integration: FAIL: %s\n"+
		"  ./scripts/test installs everything the suite needs; to skip the integration suite, say so:\n"+
		"  go test -short ./... or %s=1\n", what, skipEnv)
	os.Exit(1)
}

func TestMain(m *testing.M) {
	flag.Parse()
	if skipRequested() {
		fmt.Printf("integration: SKIPPED (-short or %s): nothing here ran\n%s\n", skipEnv, noTestsToRun)
		os.Exit(0)
	}
	root, _ := filepath.Abs("..")
	anvilBin = os.Getenv("ANVIL_BIN")
	if anvilBin == "" {
		anvilBin = filepath.Join(root, "node_modules", "@foundry-rs", "anvil-linux-amd64", "bin", "anvil")
	}
	if _, err := os.Stat(anvilBin); err != nil {
		missingTool(fmt.Sprintf("anvil not installed (npm ci installs it): %v", err))
	}
	if _, err := findGeth(); err != nil {
		missingTool(err.Error())
	}
	dir, err := os.MkdirTemp("", "perund-it-*")
	if err != nil {
		panic(err)
	}
	perundBin = filepath.Join(dir, "perund")
	args := []string{"build", "-o", perundBin}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/perund")...)
	build.Dir = root
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: build perund:", err)
		os.Exit(1)
	}
	code := m.Run()
	pg.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// devChain is a dev chain the tests run perund on: anvil (below) or
// geth --dev (geth_test.go).
type devChain interface {
	// wsURL is the chain's WebSocket endpoint.
	wsURL() string
	// deployerKey is the hex key of a funded account that deploys contracts.
	deployerKey() string
	// setBalance gives addr amount wei.
	setBalance(t *testing.T, addr common.Address, amount *big.Int)
	// passTime moves chain time forward by about secs seconds (or lets it
	// pass, where the chain cannot be told to).
	passTime(t *testing.T, c *gethrpc.Client, secs int)
}

// anvil is a running dev chain.
type anvil struct {
	port    int
	url     string
	cmd     *exec.Cmd
	state   string
	chainID uint64
}

func (a *anvil) wsURL() string { return a.url }

func (a *anvil) deployerKey() string { return keyDeployer }

func startAnvil(t *testing.T) *anvil { return startAnvilWithID(t, 1337) }

// startAnvilWithID starts anvil with chain id id (the nodes of newProc
// need --set=chain.id=ID for another id than 1337).
func startAnvilWithID(t *testing.T, id uint64) *anvil {
	a := &anvil{port: freePort(t), state: filepath.Join(t.TempDir(), "anvil-state.json"), chainID: id}
	a.url = fmt.Sprintf("ws://127.0.0.1:%d", a.port)
	a.start(t)
	t.Cleanup(a.stop)
	return a
}

func (a *anvil) start(t *testing.T) {
	a.cmd = exec.Command(anvilBin, "--host", "127.0.0.1", "--port", fmt.Sprint(a.port), "--chain-id", fmt.Sprint(a.chainID),
		"--block-time", "1", "--mixed-mining", "--silent", "--state", a.state)
	require.NoError(t, a.cmd.Start())
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", a.port), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "anvil did not start")
}

func (a *anvil) stop() {
	if a.cmd != nil && a.cmd.Process != nil {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = a.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = a.cmd.Process.Kill()
			<-done
		}
		a.cmd = nil
	}
}

func (a *anvil) rpc(t *testing.T) *gethrpc.Client { return dialRPC(t, a.url) }

// dialRPC connects to a chain's JSON-RPC endpoint for the test's own
// calls; the connection is closed at the end of the test.
func dialRPC(t *testing.T, url string) *gethrpc.Client {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := gethrpc.DialContext(ctx, url)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// passTime moves chain time forward and mines a block.
func (a *anvil) passTime(t *testing.T, c *gethrpc.Client, secs int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out any
	require.NoError(t, c.CallContext(ctx, &out, "evm_increaseTime", secs))
	require.NoError(t, c.CallContext(ctx, &out, "evm_mine"))
}

func balanceOf(t *testing.T, c *gethrpc.Client, a common.Address) *big.Int {
	var b hexutil.Big
	require.NoError(t, c.CallContext(context.Background(), &b, "eth_getBalance", a, "latest"))
	return b.ToInt()
}

// gasCost sums gasUsed × effectiveGasPrice over the receipts of hashes.
func gasCost(t *testing.T, c *gethrpc.Client, hashes []string) *big.Int {
	total := new(big.Int)
	for _, h := range hashes {
		var r struct {
			GasUsed           hexutil.Big `json:"gasUsed"`
			EffectiveGasPrice hexutil.Big `json:"effectiveGasPrice"`
			Status            hexutil.Uint64
		}
		require.NoError(t, c.CallContext(context.Background(), &r, "eth_getTransactionReceipt", h))
		total.Add(total, new(big.Int).Mul(r.GasUsed.ToInt(), r.EffectiveGasPrice.ToInt()))
	}
	return total
}

func deploy(t *testing.T, a devChain) chain.Contracts {
	c, _ := deployWithToken(t, a)
	return c
}

// deployMu serialises the deployments of tests that run in parallel: the
// Perun backend keeps one process-wide expectation of an address's next
// nonce per chain id, and the anvils of parallel tests share chain id 1337
// and the deployer's key.
var deployMu sync.Mutex

// deployWithToken deploys the contracts and a PRN token (1000 PRN for
// alice and bob) with its asset holder.
func deployWithToken(t *testing.T, a devChain) (chain.Contracts, chain.Asset) {
	deployMu.Lock()
	defer deployMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := chain.Dial(ctx, a.wsURL())
	require.NoError(t, err)
	defer cl.Close()
	k, err := crypto.HexToECDSA(a.deployerKey())
	require.NoError(t, err)
	id, err := cl.ChainID(ctx)
	require.NoError(t, err)
	cb, dep := chain.DeployerBackend(cl, id, k)
	chain.ResetNonce(id, dep.Address) // another anvil's deployment may have left an expectation
	c, err := chain.SetupContracts(ctx, cb, config.ModeDeploy, chain.Contracts{}, dep)
	require.NoError(t, err)
	ka, _ := crypto.HexToECDSA(keyAlice)
	kb, _ := crypto.HexToECDSA(keyBob)
	token, err := chain.DeployToken(ctx, cb, dep, []common.Address{crypto.PubkeyToAddress(ka.PublicKey), crypto.PubkeyToAddress(kb.PublicKey)},
		new(big.Int).Mul(big.NewInt(1000), chain.Ether))
	require.NoError(t, err)
	prn, err := chain.SetupERC20(ctx, cb, config.ModeDeploy, c.Adjudicator, chain.Asset{Symbol: "PRN", Token: token, Decimals: 18}, dep)
	require.NoError(t, err)
	chain.ResetNonce(id, dep.Address)
	return c, prn
}

// proc is a running perund process.
type proc struct {
	name    string
	dir     string
	cfgFile string
	rpcURL  string
	http    string
	cmd     *exec.Cmd
	log     *lockedBuffer
	addr    common.Address
	pw      string
	// watcher is the node's watchtower account (watcher.account).
	watcher common.Address
	// flags are more command-line arguments of perund run.
	flags []string
	// standby: start waits for the standby's /healthz (503 "standby") of a
	// cluster member instead of a ready node (failover_test.go).
	standby bool
}

// newProc starts a perund run of user key on the chain. extra is YAML
// appended to its configuration, except the strings that start with "--":
// command-line arguments of perund run (e.g. "--set=channel.minChallengeDuration=1",
// for keys of the configuration's sections).
func newProc(t *testing.T, name, key string, a devChain, c chain.Contracts, extra ...string) *proc {
	dir := t.TempDir()
	port, peerPort := freePort(t), freePort(t)
	p := &proc{name: name, dir: dir, pw: name, cfgFile: filepath.Join(dir, "perund.yaml"),
		rpcURL: fmt.Sprintf("ws://127.0.0.1:%d/rpc", port), http: fmt.Sprintf("http://127.0.0.1:%d", port)}
	var yaml []string
	for _, e := range extra {
		p.standby = p.standby || e == standbyMark
		if strings.HasPrefix(e, "--") {
			p.flags = append(p.flags, e)
		} else {
			yaml = append(yaml, e)
		}
	}
	cfg := fmt.Sprintf(`rpc:
  listen: 127.0.0.1:%d
dataDir: %s
keystore:
  lightKdf: true
chain:
  url: %s
  id: 1337
  txTimeout: 60s
contracts:
  mode: validate
  adjudicator: %s
  assetHolderETH: %s
channel:
  challengeDuration: %d
  responseTimeout: 5s
comm:
  listen: 127.0.0.1:%d
  host: 127.0.0.1
log:
  level: debug
`, port, filepath.Join(dir, "data"), a.wsURL(), c.Adjudicator.Hex(), c.AssetHolderETH.Hex(), challenge, peerPort) + strings.Join(yaml, "")
	require.NoError(t, os.WriteFile(p.cfgFile, []byte(cfg), 0o600))
	p.addr = p.importKey(t, "user", key, p.pw)
	// The node's watchtower account: a fresh key, funded on the chain, in the
	// node's keystore.
	wk, err := crypto.GenerateKey()
	require.NoError(t, err)
	p.watcher = p.importKey(t, "watcher", hexutil.Encode(crypto.FromECDSA(wk))[2:], "watcher-"+name)
	a.setBalance(t, p.watcher, new(big.Int).Mul(big.NewInt(10), chain.Ether))
	wpw := filepath.Join(dir, "watcher-pw")
	require.NoError(t, os.WriteFile(wpw, []byte("watcher-"+name), 0o600))
	cfg += fmt.Sprintf("watcher:\n  account: %s\n  passwordFile: %s\n", p.watcher.Hex(), wpw)
	require.NoError(t, os.WriteFile(p.cfgFile, []byte(cfg), 0o600))
	p.start(t)
	t.Cleanup(func() {
		p.stop(t)
		p.checkRaces(t)
		if t.Failed() {
			t.Logf("log of %s:\n%s", p.name, p.log.String())
		}
		if dir := os.Getenv("IT_LOG_DIR"); dir != "" {
			_ = os.WriteFile(filepath.Join(dir, t.Name()+"-"+p.name+".log"), p.log.Bytes(), 0o600)
		}
	})
	return p
}

// importKey imports a hex private key into the node's keystore with
// perund keys import and returns its address.
func (p *proc) importKey(t *testing.T, what, key, pw string) common.Address {
	keyFile, pwFile := filepath.Join(p.dir, what+"-key"), filepath.Join(p.dir, what+"-pw-import")
	require.NoError(t, os.WriteFile(keyFile, []byte(key), 0o600))
	require.NoError(t, os.WriteFile(pwFile, []byte(pw), 0o600))
	out, err := exec.Command(perundBin, "keys", "import", "--config", p.cfgFile, "--key-file", keyFile,
		"--password-file", pwFile, "--light-kdf").CombinedOutput()
	require.NoError(t, err, string(out))
	return common.HexToAddress(strings.TrimSpace(string(out)))
}

// setBalance gives addr amount wei on anvil.
func (a *anvil) setBalance(t *testing.T, addr common.Address, amount *big.Int) {
	c := a.rpc(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.CallContext(ctx, nil, "anvil_setBalance", addr, hexutil.EncodeBig(amount)))
}

func (p *proc) start(t *testing.T) {
	p.checkRaces(t)
	p.log = &lockedBuffer{}
	p.cmd = exec.Command(perundBin, append([]string{"run", "--config", p.cfgFile}, p.flags...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	require.NoError(t, p.cmd.Start())
	ok := false
	for i := 0; i < 200 && !ok; i++ {
		resp, err := http.Get(p.http + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			ok = resp.StatusCode == http.StatusOK ||
				p.standby && resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), `"standby"`)
			resp.Body.Close()
		}
		if !ok {
			time.Sleep(50 * time.Millisecond)
		}
	}
	require.True(t, ok, "%s did not become healthy:\n%s", p.name, p.log.String())
}

// stop ends the process gracefully (SIGTERM) and checks it exits 0.
func (p *proc) stop(t *testing.T) {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil && !t.Failed() {
			t.Errorf("%s exited with %v:\n%s", p.name, err, p.log.String())
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		t.Errorf("%s did not stop on SIGTERM", p.name)
	}
	p.cmd = nil
}

// checkRaces fails the test if the race detector reported in the log of
// the process's last run.
func (p *proc) checkRaces(t *testing.T) {
	if p.log != nil && strings.Contains(p.log.String(), "WARNING: DATA RACE") {
		t.Errorf("%s: the race detector found a data race:\n%s", p.name, p.log.String())
	}
}

// kill ends the process with SIGKILL.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

type session struct {
	*rpctest.Client
	CommAddress string `json:"commAddress"`
}

func (p *proc) login(t *testing.T) *session { return p.loginAs(t, p.addr, p.pw) }

// loginAs opens the session of another user of the node.
func (p *proc) loginAs(t *testing.T, addr common.Address, pw string) *session {
	s := &session{Client: rpctest.Dial(t, p.rpcURL)}
	s.OK("session_open", map[string]any{"account": addr.Hex(), "password": pw}, s)
	return s
}

type channelView struct {
	ChannelID string            `json:"channelId"`
	Balance   map[string]string `json:"balance"`
	Version   uint64            `json:"version"`
	State     string            `json:"state"`
	TxHashes  []string          `json:"txHashes"`
	ClosedBy  string            `json:"closedBy"`
	// The outcome of a dispute that concluded an older state.
	LatestVersion uint64            `json:"latestVersion"`
	LatestBalance map[string]string `json:"latestBalance"`
	Difference    string            `json:"difference"`
}

// pair starts alice and bob, each in the other's contacts, and opens a
// channel of 10 ETH each from alice to bob.
func pair(t *testing.T, a devChain) (alice, bob *proc, sa, sb *session, ch channelView) {
	return pairWith(t, a, deploy(t, a))
}

// pairWith is pair on already deployed contracts.
func pairWith(t *testing.T, a devChain, c chain.Contracts, extra ...string) (alice, bob *proc, sa, sb *session, ch channelView) {
	alice = newProc(t, "alice", keyAlice, a, c, extra...)
	bob = newProc(t, "bob", keyBob, a, c, extra...)
	sa, sb = alice.login(t), bob.login(t)
	ch = openBetween(t, sa, alice.addr, sb, bob.addr, "bob")
	return alice, bob, sa, sb, ch
}

// openBetween puts the users of sa and sb in each other's contacts (sb's
// as alias) and opens a channel of 10 ETH each from sa's user to sb's.
func openBetween(t *testing.T, sa *session, aAddr common.Address, sb *session, bAddr common.Address, alias string) channelView {
	return openBetweenWith(t, sa, aAddr, sb, bAddr, alias, 0)
}

// responder is a client that answers proposals and updates: a session's
// or a bare *rpctest.Client.
type responder interface {
	TryNote(timeout time.Duration, pred func(map[string]any) bool) (map[string]any, error)
	TryCall(method string, params any, timeout time.Duration) (any, error)
}

// acceptAsync accepts, from a goroutine, the first pending proposal or
// update of s that pred matches (proposal_respond or update_respond), and
// returns the function that waits for that on the test goroutine and
// fails the test if it did not work: nothing off the test goroutine calls
// require.
func acceptAsync(t *testing.T, s responder, pred func(map[string]any) bool) (wait func()) {
	done := make(chan error, 1)
	go func() {
		r, err := s.TryNote(time.Minute, pred)
		if err != nil {
			done <- err
			return
		}
		method, params := "update_respond", map[string]any{"updateId": r["updateId"], "accept": true}
		if r["proposalId"] != nil {
			method, params = "proposal_respond", map[string]any{"proposalId": r["proposalId"], "accept": true}
		}
		_, err = s.TryCall(method, params, time.Minute)
		done <- err
	}()
	return func() {
		t.Helper()
		select {
		case err := <-done:
			require.NoError(t, err, "accepting")
		case <-time.After(2 * time.Minute):
			t.Fatal("accepting did not end")
		}
	}
}

// openBetweenWith is openBetween with a challenge duration in seconds (0:
// the node's default).
func openBetweenWith(t *testing.T, sa *session, aAddr common.Address, sb *session, bAddr common.Address, alias string, challenge uint64) channelView {
	sa.OK("contacts_add", map[string]any{"alias": alias, "address": bAddr.Hex(), "commAddress": sb.CommAddress}, nil)
	sb.OK("contacts_add", map[string]any{"alias": "alice", "address": aAddr.Hex(), "commAddress": sa.CommAddress}, nil)
	var sub string
	sb.OK("perun_subscribe", []string{"proposals"}, &sub)
	accepted := acceptAsync(t, sb, func(r map[string]any) bool { return r["status"] == "pending" })
	ten := new(big.Int).Mul(big.NewInt(10), chain.Ether).String()
	var ch channelView
	params := map[string]any{"peer": alias, "balance": map[string]string{"mine": ten, "theirs": ten}}
	if challenge > 0 {
		params["challengeDuration"] = challenge
	}
	sa.OK("channel_open", params, &ch)
	accepted()
	sb.OK("perun_unsubscribe", []string{sub}, nil)
	require.Equal(t, "open", ch.State)
	return ch
}

func health(p *proc) int {
	resp, err := http.Get(p.http + "/healthz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// lockedBuffer is a process's output, written by exec's copier while the
// test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) Bytes() []byte { return []byte(b.String()) }

// closeWhileTimePasses calls method (channel_close or channel_forceClose)
// on ch and moves chain time on until the call returns the closed channel.
func closeWhileTimePasses(t *testing.T, a devChain, ethc *gethrpc.Client, s *session, method, ch string) channelView {
	done := make(chan map[string]any, 1)
	go func() { done <- s.Call(method, map[string]any{"channelId": ch}) }()
	deadline := time.After(5 * time.Minute) // stops a hang, nothing else
	for {
		select {
		case m := <-done:
			require.Nil(t, m["error"], "%s: %v", method, m["error"])
			var v channelView
			b, err := json.Marshal(m["result"])
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &v))
			return v
		case <-deadline:
			t.Fatalf("%s did not return", method)
		case <-time.After(500 * time.Millisecond):
			a.passTime(t, ethc, challenge/4)
		}
	}
}

// closedWhileTimePasses moves chain time on until the node, settling on its
// own, shows the channel closed.
func closedWhileTimePasses(t *testing.T, a devChain, ethc *gethrpc.Client, s *session, ch string) channelView {
	var v channelView
	require.Eventually(t, func() bool {
		a.passTime(t, ethc, challenge/4)
		s.OK("channel_get", map[string]any{"channelId": ch}, &v)
		return v.State == "closed"
	}, 2*time.Minute, 500*time.Millisecond)
	return v
}
