package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/config"
	"github.com/perund/perund/contacts"
	"github.com/perund/perund/daemon"
	"github.com/perund/perund/keys"
)

// tokenFlags are --token SYMBOL=ADDRESS[:DECIMALS] arguments.
type tokenFlags []config.Asset

func (t *tokenFlags) String() string { return "" }

// Set parses one --token argument; decimals left out are read from the
// token.
func (t *tokenFlags) Set(v string) error {
	sym, rest, ok := strings.Cut(v, "=")
	if !ok || sym == "" || rest == "" {
		return fmt.Errorf("--token wants SYMBOL=ADDRESS[:DECIMALS], got %q", v)
	}
	addr, dec, hasDec := strings.Cut(rest, ":")
	if _, err := contacts.ParseAddress(addr); err != nil {
		return fmt.Errorf("--token %s: %w", sym, err)
	}
	a := config.Asset{Symbol: sym, Token: addr}
	if hasDec {
		d, err := strconv.ParseUint(dec, 10, 8)
		if err != nil || d > 36 {
			return fmt.Errorf("--token %s: decimals %q is not a number from 0 to 36", sym, dec)
		}
		a.Decimals = uint8(d)
	} else {
		a.Decimals = decimalsUnknown
	}
	*t = append(*t, a)
	return nil
}

// decimalsUnknown marks a --token whose decimals are read from the token.
const decimalsUnknown = 255

// runContracts is perund contracts deploy: it deploys the Perun contracts
// (and an asset holder per ERC20 token) on the configured chain from a
// keystore account and prints the configuration that uses them.
func runContracts(args []string, stdout, stderr io.Writer) error {
	if len(args) < 1 || args[0] != "deploy" {
		return errors.New("contracts: want deploy (perund contracts deploy --config FILE)")
	}
	f := newFlags("contracts deploy")
	var tokens tokenFlags
	f.fs.Var(&tokens, "token", "deploy an asset holder for an ERC20 token: SYMBOL=ADDRESS[:DECIMALS] (repeatable; decimals read from the token when left out)")
	maxFee := f.fs.String("max-fee-gwei", "", "the most a deployment may pay per gas, in gwei (default: twice the base fee plus the tip)")
	tip := f.fs.String("tip-gwei", "", "the tip per gas, in gwei (default: the chain's suggestion)")
	timeout := f.fs.Duration("timeout", 15*time.Minute, "give up after this long")
	if err := f.fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load(config.Sources{Files: f.cfgFiles, Env: os.Environ(), Flags: f.overrides()})
	if err != nil {
		return err
	}
	if cfg.Chain.URL == config.Embedded {
		return errors.New("config key chain.url: contracts deploy needs a chain's ws:// or wss:// URL (perund dev deploys on its embedded chain by itself)")
	}
	policy := chain.TxPolicy{Confirmations: cfg.Chain.Confirmations}
	if policy.MaxFeePerGas, err = gwei("--max-fee-gwei", *maxFee); err != nil {
		return err
	}
	if policy.MaxPriorityFeePerGas, err = gwei("--tip-gwei", *tip); err != nil {
		return err
	}
	if policy.MaxFeePerGas != nil && policy.MaxPriorityFeePerGas != nil && policy.MaxFeePerGas.Cmp(policy.MaxPriorityFeePerGas) < 0 {
		return errors.New("--max-fee-gwei must not be below --tip-gwei")
	}
	ks, err := keys.New(cfg.KeystoreDir(), keys.StandardKDF)
	if err != nil {
		return err
	}
	key, err := unlockDeployer(cfg, ks, true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cl, err := chain.Dial(ctx, cfg.Chain.URL)
	if err != nil {
		return err
	}
	defer cl.Close()
	id, err := daemon.CheckChainID(ctx, cl, cfg)
	if err != nil {
		return err
	}

	assets := daemon.ConfigAssets(cfg)
	for _, t := range tokens {
		a := chain.Asset{Symbol: t.Symbol, Token: common.HexToAddress(t.Token), Decimals: t.Decimals}
		if code, err := cl.CodeAt(ctx, a.Token, nil); err != nil {
			return fmt.Errorf("token %s: %w", a.Symbol, err)
		} else if len(code) == 0 {
			return fmt.Errorf("token %s: no contract at %s on chain %s", a.Symbol, a.Token.Hex(), id)
		}
		if a.Decimals == decimalsUnknown {
			if a.Decimals, err = chain.TokenDecimals(ctx, cl, a.Token); err != nil {
				return fmt.Errorf("token %s: %w (give them as --token %s=%s:DECIMALS)", a.Symbol, err, a.Symbol, a.Token.Hex())
			}
		}
		assets = append(assets, a)
	}

	rec := &sentTxs{ContractInterface: cl}
	cb, dep := chain.KeyBackend(rec, id, key, policy)
	before, err := cl.BalanceAt(ctx, dep.Address, nil)
	if err != nil {
		return fmt.Errorf("balance of the deployer: %w", err)
	}
	tipNow, capNow, err := chain.Fees(ctx, cl)
	if err != nil {
		return err
	}
	if policy.MaxPriorityFeePerGas != nil {
		tipNow = policy.MaxPriorityFeePerGas
	}
	if policy.MaxFeePerGas != nil {
		capNow = policy.MaxFeePerGas
	}
	fmt.Fprintf(stderr, "deploying on chain %s from %s (balance %s ETH), tip %s gwei, fee cap %s gwei, %d confirmation(s) each\n",
		id, dep.Address.Hex(), formatUnits(before, 18), formatUnits(tipNow, 9), formatUnits(capNow, 9), policy.Confirmations)

	given := chain.Contracts{Adjudicator: common.HexToAddress(cfg.Contracts.Adjudicator), AssetHolderETH: common.HexToAddress(cfg.Contracts.AssetHolderETH)}
	var reportErr error
	c, assets, err := chain.SetupAll(ctx, cb, config.ModeValidateOrDeploy, given, assets, dep, func(name string, addr common.Address) {
		tx := rec.creation(addr, dep.Address)
		if tx == nil {
			fmt.Fprintf(stderr, "  %-24s %s\n", name, addr.Hex())
			return
		}
		r, err := cl.TransactionReceipt(ctx, tx.Hash())
		if err != nil {
			reportErr = errors.Join(reportErr, fmt.Errorf("receipt of %s: %w", tx.Hash().Hex(), err))
			return
		}
		fmt.Fprintf(stderr, "  %-24s %s  tx %s  block %s  gas %d\n", name, addr.Hex(), tx.Hash().Hex(), r.BlockNumber, r.GasUsed)
	})
	if err != nil {
		return err
	}
	if reportErr != nil {
		return reportErr
	}
	after, err := cl.BalanceAt(ctx, dep.Address, nil)
	if err != nil {
		return fmt.Errorf("balance of the deployer: %w", err)
	}
	fmt.Fprintf(stderr, "cost %s ETH (%d transaction(s)); put this into the configuration of each node on this chain:\n",
		formatUnits(new(big.Int).Sub(before, after), 18), rec.count())
	fmt.Fprint(stdout, configSnippet(cfg.Chain.ID, cfg.Chain.Confirmations, c, assets, dep.Address, time.Now()))
	return nil
}

// configSnippet is the YAML a node's configuration needs to use c and
// assets: a file of its own that perund run takes after the node's own
// (--config perund.yaml --config contracts.yaml), so it holds the chain id
// the contracts are on, not the node's other chain settings.
func configSnippet(chainID, confirmations uint64, c chain.Contracts, assets []chain.Asset, deployer common.Address, at time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Perun contracts on chain %d, deployed by %s at %s (%d confirmation(s) each).\n", chainID, deployer.Hex(), at.UTC().Format(time.RFC3339), confirmations)
	b.WriteString("# Use it beside the node's configuration: perund run --config perund.yaml --config contracts.yaml\n")
	fmt.Fprintf(&b, "chain:\n  id: %d\n", chainID)
	fmt.Fprintf(&b, "contracts:\n  mode: validate\n  adjudicator: %s\n  assetHolderETH: %s\n", c.Adjudicator.Hex(), c.AssetHolderETH.Hex())
	if len(assets) > 0 {
		b.WriteString("assets:\n")
		for _, a := range assets {
			fmt.Fprintf(&b, "  - symbol: %s\n    token: %s\n    assetHolder: %s\n    decimals: %d\n", a.Symbol, a.Token.Hex(), a.Holder.Hex(), a.Decimals)
		}
	}
	return b.String()
}

// sentTxs records the transactions sent through it.
type sentTxs struct {
	ethchannel.ContractInterface
	mu  sync.Mutex
	txs []*types.Transaction
}

// SendTransaction records tx and sends it.
func (s *sentTxs) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	if err := s.ContractInterface.SendTransaction(ctx, tx); err != nil {
		return err
	}
	s.mu.Lock()
	s.txs = append(s.txs, tx)
	s.mu.Unlock()
	return nil
}

// creation is the recorded contract creation that made addr (a contract's
// address follows from its creator and the creation's nonce).
func (s *sentTxs) creation(addr, from common.Address) *types.Transaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tx := range s.txs {
		if tx.To() == nil && crypto.CreateAddress(from, tx.Nonce()) == addr {
			return tx
		}
	}
	return nil
}

func (s *sentTxs) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.txs)
}

// gwei parses a decimal amount of gwei ("1.5") into wei; "" is nil.
func gwei(flagName, s string) (*big.Int, error) {
	if s == "" {
		return nil, nil
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || r.Sign() < 0 {
		return nil, fmt.Errorf("%s: %q is not a non-negative decimal number of gwei", flagName, s)
	}
	r.Mul(r, new(big.Rat).SetInt64(1e9))
	if !r.IsInt() {
		return nil, fmt.Errorf("%s: %q has more than 9 decimals (below one wei)", flagName, s)
	}
	return new(big.Int).Set(r.Num()), nil
}

// formatUnits writes v/10^decimals as a decimal number without trailing
// zeros.
func formatUnits(v *big.Int, decimals int) string {
	r := new(big.Rat).SetFrac(v, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(decimals)), nil))
	s := r.FloatString(decimals)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
