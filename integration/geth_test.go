package integration

// The cooperative flow and one dispute on geth --dev, the client most of
// Ethereum runs (the other tests run on anvil). ./scripts/test installs
// geth (go install of cmd/geth at go.mod's go-ethereum version) and sets
// GETH_BIN; without it the suite fails at its start unless it is skipped
// as a whole (go test -short, or PERUND_SKIP_INTEGRATION; see TestMain).
//
// How geth --dev differs from anvil, and how the tests cope:
//   - It mines a block every second (--dev.period 1) and takes at least
//     until the next block to mine a transaction: every deposit, conclude
//     and withdrawal waits for real blocks.
//   - It cannot be told to move time (no evm_increaseTime or evm_mine):
//     the dispute test waits for the challenge period in real time, so its
//     channel has a challenge duration of a few seconds
//     (channel.minChallengeDuration lowered in the nodes' configuration).
//   - It cannot set balances (no anvil_setBalance): the genesis funds
//     alice, bob and a deployer, and the developer account (a key the test
//     puts in the datadir's keystore, funded by the genesis too) pays the
//     nodes' watchtower accounts by plain transfers.
//   - Its own dev genesis enables the forks after mainnet's (in geth
//     1.17.10 "Bogota", with Amsterdam's EIP-8037 state-gas metering),
//     under which perund's earlier fixed 100,000 gas for an ETH deposit
//     ran out of gas (the deposit reverted); perund now estimates a
//     deposit's gas. TestGethCooperative runs on geth's own dev genesis
//     (those future forks on), TestGethForceClose on mainnet's rules
//     (geth init: the dev chain's config up to Osaka), so that both rule
//     sets are tried.

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"go/build"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	gethrpc "github.com/ethereum/go-ethereum/rpc"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
)

// gethFunding is each of alice's, bob's and the deployer's balance in the
// genesis: their balances from then on are exact.
var gethFunding = eth(100)

// gethChallenge is the dispute test's challenge duration (seconds) on
// geth, where it passes in real time. Funding must complete within one
// challenge duration of block time (two deposits, a block each at least).
const gethChallenge = 5

var (
	gethOnce sync.Once
	gethBin  string
	gethErr  string
)

// requireGeth is the geth binary (findGeth; TestMain has made sure there
// is one).
func requireGeth(t *testing.T) string {
	p, err := findGeth()
	require.NoError(t, err)
	return p
}

// findGeth finds the geth binary: GETH_BIN, else the Go bin dir that
// ./scripts/test installs it in, else PATH.
func findGeth() (string, error) {
	gethOnce.Do(func() {
		candidates := []string{os.Getenv("GETH_BIN"), filepath.Join(build.Default.GOPATH, "bin", "geth")}
		if p, err := exec.LookPath("geth"); err == nil {
			candidates = append(candidates, p)
		}
		for _, c := range candidates {
			if c == "" {
				continue
			}
			if st, err := os.Stat(c); err == nil && !st.IsDir() {
				gethBin = c
				return
			}
		}
		gethErr = "geth not installed (go install github.com/ethereum/go-ethereum/cmd/geth@<go.mod's version> installs it), or set GETH_BIN"
	})
	if gethBin == "" {
		return "", errors.New(gethErr)
	}
	return gethBin, nil
}

// gethDev is a running geth --dev chain.
type gethDev struct {
	url      string
	cmd      *exec.Cmd
	log      *lockedBuffer
	exited   chan struct{}
	ethc     *ethclient.Client
	chainID  *big.Int
	dev      *ecdsa.PrivateKey // the prefunded developer account
	deployer *ecdsa.PrivateKey // a fresh account, funded by dev
	mu       sync.Mutex        // serialises dev's transactions (nonces)
}

var gethWSURL = regexp.MustCompile(`WebSocket enabled +url=(ws://127\.0\.0\.1:[0-9]+)`)

// gethRules are the forks a geth dev chain runs.
type gethRules int

const (
	// mainnetRules: geth's dev config up to Osaka, the forks mainnet runs.
	mainnetRules gethRules = iota
	// futureRules: geth's own dev config, with the forks after mainnet's.
	futureRules
)

// gethGenesis writes the genesis of a dev chain with rules (see the top of
// the file) that funds dev, alice, bob and deployer.
func gethGenesis(t *testing.T, file string, rules gethRules, dev, deployer common.Address) {
	g := core.DeveloperGenesisBlock(30_000_000, &dev)
	cfg := *g.Config
	require.NotNil(t, cfg.OsakaTime, "geth's dev config has Osaka")
	if rules == mainnetRules {
		cfg.AmsterdamTime, cfg.BogotaTime, cfg.UBTTime = nil, nil, nil
	} else {
		require.NotNil(t, cfg.BogotaTime, "geth's dev config has Bogota")
	}
	g.Config = &cfg
	g.Alloc[dev] = types.Account{Balance: eth(1_000_000)}
	for _, a := range []common.Address{addrOf(keyAlice), addrOf(keyBob), deployer} {
		g.Alloc[a] = types.Account{Balance: gethFunding}
	}
	b, err := json.Marshal(g)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file, b, 0o600))
}

// startGeth starts geth --dev on a temp datadir initialised with
// gethGenesis with rules, its WebSocket API on a free loopback port (port
// 0: geth logs the one it got), and stops it at the end of the test.
func startGeth(t *testing.T, rules gethRules) *gethDev {
	bin := requireGeth(t)
	dir := t.TempDir()
	g := &gethDev{log: &lockedBuffer{}, exited: make(chan struct{})}
	// The developer account: geth --dev takes the keystore's first account
	// (password empty).
	acc, err := keystore.StoreKey(filepath.Join(dir, "keystore"), "", keystore.LightScryptN, keystore.LightScryptP)
	require.NoError(t, err)
	js, err := os.ReadFile(acc.URL.Path)
	require.NoError(t, err)
	k, err := keystore.DecryptKey(js, "")
	require.NoError(t, err)
	g.dev = k.PrivateKey
	// Its own deployer, so that deployments on two geth chains at once
	// (both chain id 1337) never share the Perun backend's process-wide
	// expectation of one address's next nonce.
	g.deployer, err = crypto.GenerateKey()
	require.NoError(t, err)
	genesis := filepath.Join(dir, "genesis.json")
	gethGenesis(t, genesis, rules, acc.Address, crypto.PubkeyToAddress(g.deployer.PublicKey))
	ictx, icancel := context.WithTimeout(context.Background(), time.Minute)
	defer icancel()
	out, err := exec.CommandContext(ictx, bin, "init", "--datadir", dir, genesis).CombinedOutput()
	require.NoError(t, err, "geth init:\n%s", out)

	g.cmd = exec.Command(bin, "--dev", "--dev.period", "1", "--datadir", dir,
		"--ws", "--ws.addr", "127.0.0.1", "--ws.port", "0", "--ws.api", "eth,net,web3",
		"--authrpc.addr", "127.0.0.1", "--authrpc.port", "0",
		"--port", "0", "--nodiscover", "--maxpeers", "0", "--nat", "none", "--ipcdisable", "--verbosity", "3")
	g.cmd.Stdout, g.cmd.Stderr = g.log, g.log
	require.NoError(t, g.cmd.Start())
	go func() { _ = g.cmd.Wait(); close(g.exited) }()
	t.Cleanup(func() {
		if g.ethc != nil {
			g.ethc.Close()
		}
		_ = g.cmd.Process.Signal(os.Interrupt)
		select {
		case <-g.exited:
		case <-time.After(10 * time.Second):
			_ = g.cmd.Process.Kill()
			<-g.exited
			t.Errorf("geth did not stop on SIGINT")
		}
		if t.Failed() {
			t.Logf("geth log:\n%s", g.log.String())
		}
	})
	deadline := time.After(30 * time.Second)
	for g.url == "" {
		if m := gethWSURL.FindStringSubmatch(g.log.String()); m != nil {
			g.url = m[1]
			break
		}
		select {
		case <-g.exited:
			t.Fatalf("geth exited at start:\n%s", g.log.String())
		case <-deadline:
			t.Fatalf("geth did not open its WebSocket endpoint:\n%s", g.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g.ethc, err = chain.Dial(ctx, g.url)
	require.NoError(t, err)
	g.chainID, err = g.ethc.ChainID(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1337, g.chainID.Int64(), "the nodes' configuration says chain id 1337")
	require.Contains(t, g.log.String(), "Using developer account", "geth --dev")
	require.Contains(t, g.log.String(), acc.Address.Hex(), "geth --dev uses the keystore's account")
	return g
}

// send pays amounts[i] to to[i] from the developer account, all in the
// next blocks, and waits until each is mined.
func (g *gethDev) send(t *testing.T, to []common.Address, amounts []*big.Int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	from := crypto.PubkeyToAddress(g.dev.PublicKey)
	nonce, err := g.ethc.PendingNonceAt(ctx, from)
	require.NoError(t, err)
	tip, feeCap, err := chain.Fees(ctx, g.ethc)
	require.NoError(t, err)
	signer := types.LatestSignerForChainID(g.chainID)
	var txs []*types.Transaction
	for i := range to {
		tx, err := types.SignNewTx(g.dev, signer, &types.DynamicFeeTx{ChainID: g.chainID, Nonce: nonce + uint64(i),
			GasTipCap: tip, GasFeeCap: feeCap, Gas: 21_000, To: &to[i], Value: amounts[i]})
		require.NoError(t, err)
		require.NoError(t, g.ethc.SendTransaction(ctx, tx))
		txs = append(txs, tx)
	}
	for _, tx := range txs {
		r, err := bind.WaitMined(ctx, g.ethc, tx)
		require.NoError(t, err, "transfer from the developer account not mined")
		require.Equal(t, types.ReceiptStatusSuccessful, r.Status)
	}
}

func (g *gethDev) wsURL() string { return g.url }

func (g *gethDev) deployerKey() string { return hexutil.Encode(crypto.FromECDSA(g.deployer))[2:] }

// setBalance tops addr up to amount from the developer account (geth
// cannot set a balance; the tests fund fresh accounts only).
func (g *gethDev) setBalance(t *testing.T, addr common.Address, amount *big.Int) {
	have := balanceOf(t, g.rpc(t), addr)
	require.True(t, have.Cmp(amount) <= 0, "geth cannot lower %s's balance", addr)
	if have.Cmp(amount) < 0 {
		g.send(t, []common.Address{addr}, []*big.Int{new(big.Int).Sub(amount, have)})
	}
}

// passTime cannot move geth's clock: time passes for real, a block every
// second, while the callers (closeWhileTimePasses) wait between calls.
func (g *gethDev) passTime(*testing.T, *gethrpc.Client, int) {}

func (g *gethDev) rpc(t *testing.T) *gethrpc.Client { return dialRPC(t, g.url) }

// TestGethCooperative: on geth --dev, alice opens a channel of 10 ETH each
// with bob, they pay each other (alternating, 6 payments each way), alice
// closes cooperatively; both on-chain balances are exact: the funding,
// less the deposit, plus the final share, less the gas of every
// transaction of theirs from the receipts.
func TestGethCooperative(t *testing.T) {
	t.Parallel()
	g := startGeth(t, futureRules)
	ethc := g.rpc(t)
	alice, bob, sa, sb, ch := pair(t, g)
	for i := 0; i < 6; i++ {
		sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "3000"}, nil)
		sb.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "1000"}, nil)
	}
	// alice paid 6×3000, bob 6×1000: alice is down 12,000 wei.
	sb.OK("perun_subscribe", []string{"updates"}, nil)
	accepted := acceptAsync(t, sb, func(r map[string]any) bool { return r["kind"] == "close" && r["status"] == "pending" })
	defer accepted()
	var closed channelView
	sa.OK("channel_close", map[string]any{"channelId": ch.ChannelID}, &closed)
	require.Equal(t, "closed", closed.State)
	require.Equal(t, "agreement", closed.ClosedBy)
	require.Equal(t, uint64(13), closed.Version)
	wantA := new(big.Int).Sub(eth(10), big.NewInt(12_000))
	wantB := new(big.Int).Add(eth(10), big.NewInt(12_000))
	require.Equal(t, wantA.String(), closed.Balance["mine"])
	require.Equal(t, wantB.String(), closed.Balance["theirs"])

	var bv channelView
	require.Eventually(t, func() bool {
		sb.OK("channel_get", map[string]any{"channelId": ch.ChannelID}, &bv)
		return bv.State == "closed"
	}, time.Minute, 200*time.Millisecond)
	for _, p := range []struct {
		who   *proc
		share *big.Int
		txs   []string
	}{{alice, wantA, closed.TxHashes}, {bob, wantB, bv.TxHashes}} {
		require.GreaterOrEqual(t, len(p.txs), 2, "%s: a deposit and a withdrawal at least", p.who.name)
		want := new(big.Int).Sub(gethFunding, eth(10))
		want.Add(want, p.share).Sub(want, gasCost(t, ethc, p.txs))
		require.Equal(t, want.String(), balanceOf(t, ethc, p.who.addr).String(), "%s's balance", p.who.name)
	}
}

// TestGethForceClose: on geth --dev, bob's process dies after payments;
// alice force-closes: her node registers the latest state, waits out the
// challenge period (gethChallenge seconds of real time: geth has no
// evm_increaseTime, see the top of the file), concludes and withdraws.
// Her on-chain balance is exact.
func TestGethForceClose(t *testing.T) {
	t.Parallel()
	g := startGeth(t, mainnetRules)
	ethc := g.rpc(t)
	alice, bob, sa, sb, ch := pairWith(t, g, deploy(t, g), "--set=channel.minChallengeDuration=1",
		fmt.Sprintf("--set=channel.challengeDuration=%d", gethChallenge))
	var raw map[string]any
	sa.OK("channel_get", map[string]any{"channelId": ch.ChannelID}, &raw)
	require.EqualValues(t, gethChallenge, raw["challengeDuration"])
	for i := 0; i < 3; i++ {
		sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(2).String()}, nil)
	}
	sb.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(1).String()}, nil)
	// Latest: version 4, alice 10−6+1 = 5 ETH.
	var v channelView
	require.Eventually(t, func() bool {
		sa.OK("channel_get", map[string]any{"channelId": ch.ChannelID}, &v)
		return v.Version == 4
	}, 10*time.Second, 10*time.Millisecond)
	bob.kill()
	sa.OK("perun_subscribe", []string{"disputes"}, nil)
	t0 := time.Now()
	closed := closeWhileTimePasses(t, g, ethc, sa, "channel_forceClose", ch.ChannelID)
	took := time.Since(t0)
	t.Logf("force close took %v (challenge duration %d s)", took, gethChallenge)
	reg := sa.Note(time.Second, func(r map[string]any) bool { return r["event"] == "registered" })
	require.EqualValues(t, 4, reg["version"])
	require.Equal(t, false, reg["byPeer"])
	require.NotEmpty(t, reg["timeout"])
	require.Equal(t, "closed", closed.State)
	require.Equal(t, "dispute", closed.ClosedBy)
	require.Equal(t, eth(5).String(), closed.Balance["mine"])
	require.GreaterOrEqual(t, took, gethChallenge*time.Second, "the challenge period passed in real time")
	sa.Note(time.Minute, func(r map[string]any) bool { return r["event"] == "concluded" })
	// deposit, register, conclude, withdraw (conclude and withdraw may be one).
	require.GreaterOrEqual(t, len(closed.TxHashes), 3, closed.TxHashes)
	want := new(big.Int).Sub(gethFunding, eth(10))
	want.Add(want, eth(5)).Sub(want, gasCost(t, ethc, closed.TxHashes))
	require.Equal(t, want.String(), balanceOf(t, ethc, alice.addr).String(), "alice gets every wei of the latest state")
}
