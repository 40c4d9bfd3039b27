package integration

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	gethrpc "github.com/ethereum/go-ethereum/rpc"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/config"
)

// sepoliaID is the chain id of the Sepolia test network, which the public
// network test gives anvil: the commands of docs/operations.md's guide,
// run against a chain that cannot be reached from here.
const sepoliaID = 11155111

// testnetConfirmations is chain.confirmations of the public network test.
const testnetConfirmations = 3

var deployedTx = regexp.MustCompile(`(?m)^  (\S.*?) +(0x[0-9a-fA-F]{40})  tx (0x[0-9a-f]{64})`)

// TestPublicNetworkDeploy follows the public network guide
// (docs/operations.md) on anvil with Sepolia's chain id: perund contracts
// deploy from a keystore account with fee settings (the transactions carry
// them); its configuration snippet accepted as it is by two nodes, as a
// second --config after their own, with chain.confirmations 3 (a
// channel's deposits are at least 3 blocks deep when channel_open
// answers); an ETH and an ERC20 channel on the deployed contracts closed
// to the wei; a second deploy that adds a token's asset holder to the
// deployment.
func TestPublicNetworkDeploy(t *testing.T) {
	t.Parallel()
	a := startAnvilWithID(t, sepoliaID)
	ethc := a.rpc(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// A token the operator wants channels in, issued by someone else.
	cl, err := chain.Dial(ctx, a.wsURL())
	require.NoError(t, err)
	defer cl.Close()
	issuer, err := crypto.HexToECDSA(keyCarol)
	require.NoError(t, err)
	// A fresh chain: the nonces perun-eth-backend expects (process-wide)
	// from an earlier run of this test (go test -count=2) do not hold.
	chain.ResetNonce(big.NewInt(sepoliaID), addrOf(keyCarol))
	icb, iacc := chain.DeployerBackend(cl, big.NewInt(sepoliaID), issuer)
	token, err := chain.DeployToken(ctx, icb, iacc, []common.Address{addrOf(keyAlice), addrOf(keyBob)}, eth(1000))
	require.NoError(t, err)
	token2, err := chain.DeployToken(ctx, icb, iacc, []common.Address{addrOf(keyAlice)}, eth(1))
	require.NoError(t, err)

	// The operator's deployer account in a keystore, its password in a file.
	dir := t.TempDir()
	ks := filepath.Join(dir, "keystore")
	pwFile := filepath.Join(dir, "deployer-password")
	require.NoError(t, os.WriteFile(pwFile, []byte("deployer secret\n"), 0o600))
	keyFile := filepath.Join(dir, "deployer-key")
	require.NoError(t, os.WriteFile(keyFile, []byte(keyDeployer), 0o600))
	out, err := exec.Command(perundBin, "keys", "import", "--keystore", ks, "--key-file", keyFile, "--password-file", pwFile, "--light-kdf").CombinedOutput()
	require.NoError(t, err, string(out))
	deployer := common.HexToAddress(strings.TrimSpace(string(out)))
	require.Equal(t, addrOf(keyDeployer), deployer)
	cfgFile := filepath.Join(dir, "deploy.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(fmt.Sprintf(`dataDir: %s
keystore:
  dir: %s
chain:
  url: %s
  id: %d
  confirmations: %d
contracts:
  deployer: %s
  deployerPasswordFile: %s
`, filepath.Join(dir, "data"), ks, a.wsURL(), sepoliaID, testnetConfirmations, deployer.Hex(), pwFile)), 0o600))

	// The deployment, with a fee cap and a tip.
	snippet, log := runDeploy(t, cfgFile, "--token", "PRN="+token.Hex(), "--max-fee-gwei", "50", "--tip-gwei", "1.5")
	t.Logf("contracts deploy:\n%s%s", log, snippet)
	deployed := deployedTx.FindAllStringSubmatch(log, -1)
	require.Len(t, deployed, 3, "adjudicator, ETH and PRN asset holders:\n%s", log)
	for i, name := range []string{"Adjudicator", "AssetHolderETH", "AssetHolderERC20 PRN"} {
		require.Equal(t, name, deployed[i][1])
		var tx struct {
			MaxFee hexutil.Big `json:"maxFeePerGas"`
			Tip    hexutil.Big `json:"maxPriorityFeePerGas"`
			From   common.Address
		}
		require.NoError(t, ethc.CallContext(ctx, &tx, "eth_getTransactionByHash", deployed[i][3]))
		require.Equal(t, big.NewInt(50e9), tx.MaxFee.ToInt(), name)
		require.Equal(t, big.NewInt(15e8), tx.Tip.ToInt(), name)
		require.Equal(t, deployer, tx.From)
	}
	require.Contains(t, log, fmt.Sprintf("%d confirmation(s) each", testnetConfirmations))

	// The snippet is a configuration perund accepts as it is.
	snippetFile := filepath.Join(dir, "contracts.yaml")
	require.NoError(t, os.WriteFile(snippetFile, []byte(snippet), 0o600))
	got, err := config.Load(config.Sources{File: snippetFile})
	require.NoError(t, err, snippet)
	require.Equal(t, uint64(sepoliaID), got.Chain.ID)
	require.Equal(t, config.ModeValidate, got.Contracts.Mode)
	require.Equal(t, deployed[0][2], got.Contracts.Adjudicator)
	require.Equal(t, deployed[1][2], got.Contracts.AssetHolderETH)
	require.Len(t, got.Assets, 1)
	require.Equal(t, config.Asset{Symbol: "PRN", Token: token.Hex(), AssetHolder: deployed[2][2], Decimals: 18}, got.Assets[0])

	// Two nodes on the deployment, each deposit counted 3 blocks deep.
	c := chain.Contracts{Adjudicator: common.HexToAddress(got.Contracts.Adjudicator), AssetHolderETH: common.HexToAddress(got.Contracts.AssetHolderETH)}
	// perund run --config perund.yaml --config contracts.yaml, as the guide says.
	flags := []string{"--config=" + snippetFile, fmt.Sprintf("--set=chain.confirmations=%d", testnetConfirmations)}
	alice, bob, sa, sb, ch := pairWith(t, a, c, flags...)
	head := blockNumber(t, ethc)
	requireDeep(t, ethc, ch.TxHashes, head)
	sb.OK("perun_subscribe", []string{"proposals"}, nil)
	sb.OK("perun_subscribe", []string{"updates"}, nil)
	var prn channelView
	accepted := acceptAsync(t, sb, func(r map[string]any) bool { return r["status"] == "pending" && r["asset"] == "PRN" })
	defer accepted()
	sa.OK("channel_open", map[string]any{"peer": "bob", "asset": "PRN", "balance": map[string]string{"mine": eth(100).String(), "theirs": eth(50).String()}}, &prn)
	requireDeep(t, ethc, prn.TxHashes, blockNumber(t, ethc))

	sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(2).String()}, nil)
	sa.OK("channel_send", map[string]any{"channelId": prn.ChannelID, "amount": eth(7).String()}, nil)
	ethBefore := balanceOf(t, ethc, bob.addr)
	var bobsTxs []string
	for _, id := range []string{ch.ChannelID, prn.ChannelID} {
		accepted := acceptAsync(t, sb, func(r map[string]any) bool {
			return r["kind"] == "close" && r["status"] == "pending" && r["channelId"] == id
		})
		var closed channelView
		sa.OK("channel_close", map[string]any{"channelId": id}, &closed)
		accepted()
		require.Equal(t, "closed", closed.State)
	}
	// bob's ether: +12 ETH withdrawn (10 + 2) less the gas of the
	// transactions he sent to close both channels, once his node has
	// withdrawn from both.
	for _, id := range []string{ch.ChannelID, prn.ChannelID} {
		var bv channelView
		require.Eventually(t, func() bool {
			sb.OK("channel_get", map[string]any{"channelId": id}, &bv)
			return bv.State == "closed"
		}, time.Minute, 100*time.Millisecond)
		for _, h := range sentBy(t, ethc, bv.TxHashes, bob.addr) {
			if !isDeposit(t, ethc, h) {
				bobsTxs = append(bobsTxs, h)
			}
		}
	}
	gas := gasCost(t, ethc, bobsTxs)
	want := new(big.Int).Sub(new(big.Int).Add(ethBefore, eth(12)), gas)
	require.Equal(t, want.String(), balanceOf(t, ethc, bob.addr).String(), "bob's ether to the wei")
	require.Eventually(t, func() bool {
		b, err := chain.TokenBalance(ctx, cl, token, bob.addr)
		return err == nil && b.Cmp(eth(1000-50+57)) == 0
	}, time.Minute, 100*time.Millisecond, "bob's PRN: 1000 − 50 deposited + 57 withdrawn")
	pa, err := chain.TokenBalance(ctx, cl, token, alice.addr)
	require.NoError(t, err)
	require.Equal(t, eth(1000-100+93).String(), pa.String(), "alice's PRN")

	// Later: a second token; the deployment's contracts are validated, only
	// the new asset holder is deployed.
	more, log2 := runDeploy(t, cfgFile, "--set", "contracts.adjudicator="+got.Contracts.Adjudicator,
		"--set", "contracts.assetHolderETH="+got.Contracts.AssetHolderETH, "--token", "TKN="+token2.Hex()+":6")
	added := deployedTx.FindAllStringSubmatch(log2, -1)
	require.Len(t, added, 1, log2)
	require.Equal(t, "AssetHolderERC20 TKN", added[0][1])
	require.Contains(t, more, "adjudicator: "+got.Contracts.Adjudicator)
	require.Contains(t, more, "decimals: 6")
}

// TestContractsDeployRefuses: the deploy command's errors name what is
// wrong and send nothing.
func TestContractsDeployRefuses(t *testing.T) {
	t.Parallel()
	a := startAnvilWithID(t, sepoliaID)
	dir := t.TempDir()
	ks := filepath.Join(dir, "keystore")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pw"), []byte("right"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wrong-pw"), []byte("wrong"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "key"), []byte(keyDeployer), 0o600))
	out, err := exec.Command(perundBin, "keys", "import", "--keystore", ks, "--key-file", filepath.Join(dir, "key"),
		"--password-file", filepath.Join(dir, "pw"), "--light-kdf").CombinedOutput()
	require.NoError(t, err, string(out))
	cfg := func(id uint64, deployer common.Address, pw string) string {
		return fmt.Sprintf("dataDir: %s\nkeystore:\n  dir: %s\nchain:\n  url: %s\n  id: %d\ncontracts:\n  deployer: %s\n  deployerPasswordFile: %s\n",
			filepath.Join(dir, "data"), ks, a.wsURL(), id, deployer.Hex(), filepath.Join(dir, pw))
	}
	ok := cfg(sepoliaID, addrOf(keyDeployer), "pw")
	tests := []struct {
		name string
		cfg  string
		args []string
		want string
	}{
		{"wrong chain id", cfg(1, addrOf(keyDeployer), "pw"), nil, "config key chain.id: 1, but the chain at"},
		{"deployer not in the keystore", cfg(sepoliaID, addrOf(keyBob), "pw"), nil, "unlock deployer " + addrOf(keyBob).Hex()},
		{"wrong password", cfg(sepoliaID, addrOf(keyDeployer), "wrong-pw"), nil, "unlock deployer"},
		{"fee below tip", ok, []string{"--max-fee-gwei", "1", "--tip-gwei", "2"}, "--max-fee-gwei must not be below --tip-gwei"},
		{"fee below one wei", ok, []string{"--max-fee-gwei", "0.0000000001"}, "below one wei"},
		{"bad token address", ok, []string{"--token", "PRN=0x12"}, "--token PRN"},
		{"no contract at the token", ok, []string{"--token", "PRN=" + addrOf(keyBob).Hex()}, "token PRN: no contract at"},
		{"embedded chain", "chain:\n  url: embedded\n", nil, "contracts deploy needs a chain's ws:// or wss:// URL"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, fmt.Sprintf("c%d.yaml", i))
			require.NoError(t, os.WriteFile(f, []byte(tc.cfg), 0o600))
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(perundBin, append([]string{"contracts", "deploy", "--config", f}, tc.args...)...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			require.Error(t, cmd.Run())
			require.Contains(t, stderr.String(), tc.want)
			require.Empty(t, stdout.String(), "no configuration printed")
		})
	}
	var n hexutil.Uint64
	require.NoError(t, a.rpc(t).CallContext(context.Background(), &n, "eth_getTransactionCount", addrOf(keyDeployer), "latest"))
	require.Zero(t, uint64(n), "nothing was sent")
}

// runDeploy runs perund contracts deploy and returns its standard output
// (the configuration snippet) and its standard error (the report).
func runDeploy(t *testing.T, cfgFile string, args ...string) (stdout, stderr string) {
	var o, e bytes.Buffer
	cmd := exec.Command(perundBin, append([]string{"contracts", "deploy", "--config", cfgFile}, args...)...)
	cmd.Stdout, cmd.Stderr = &o, &e
	done := make(chan error, 1)
	require.NoError(t, cmd.Start())
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "stderr:\n%s", e.String())
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("contracts deploy did not finish:\n%s", e.String())
	}
	return o.String(), e.String()
}

// requireDeep checks that each of hashes was at least testnetConfirmations
// blocks deep at block head (its own block counting as the first).
func requireDeep(t *testing.T, c *gethrpc.Client, hashes []string, head uint64) {
	require.NotEmpty(t, hashes)
	for _, h := range hashes {
		var r struct {
			BlockNumber hexutil.Uint64 `json:"blockNumber"`
		}
		require.NoError(t, c.CallContext(context.Background(), &r, "eth_getTransactionReceipt", h))
		require.GreaterOrEqual(t, head+1, uint64(r.BlockNumber)+testnetConfirmations,
			"transaction %s in block %d counted at head %d", h, r.BlockNumber, head)
	}
}

// sentBy are those of hashes that from sent.
func sentBy(t *testing.T, c *gethrpc.Client, hashes []string, from common.Address) []string {
	var out []string
	for _, h := range hashes {
		var tx struct{ From common.Address }
		require.NoError(t, c.CallContext(context.Background(), &tx, "eth_getTransactionByHash", h))
		if tx.From == from {
			out = append(out, h)
		}
	}
	return out
}

// isDeposit tells a deposit (or an ERC20 approval) from the closing
// transactions: deposits carry ether or go to the token, withdrawals and
// conclusions carry none.
func isDeposit(t *testing.T, c *gethrpc.Client, hash string) bool {
	var tx struct {
		Value hexutil.Big `json:"value"`
		Input hexutil.Bytes
	}
	require.NoError(t, c.CallContext(context.Background(), &tx, "eth_getTransactionByHash", hash))
	return tx.Value.ToInt().Sign() > 0 || bytes.HasPrefix(tx.Input, approveSelector) || bytes.HasPrefix(tx.Input, depositSelector)
}

var (
	approveSelector = crypto.Keccak256([]byte("approve(address,uint256)"))[:4]
	depositSelector = crypto.Keccak256([]byte("deposit(bytes32,uint256)"))[:4]
)
