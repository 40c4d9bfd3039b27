// Package daemon assembles a running perund from its parts: the chain and
// the Perun contracts on it, the node's options, the JSON-RPC API on its
// listener, and users introduced to each other. `perund run`, `perund dev`
// and the test kit (internal/perundtest) build their nodes through it, so
// a test runs the node as the binary assembles it.
package daemon

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"path/filepath"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/config"
	"github.com/perund/perund/node"
)

// Chain is a chain connection with the Perun contracts on it.
type Chain struct {
	// Backend is the connection the node sends and reads through.
	Backend chain.Backend
	// Embedded is the in-process chain, when it is one (nil otherwise).
	Embedded *chain.Embedded
	// Contracts are the adjudicator and the ETH asset holder.
	Contracts chain.Contracts
	// Assets are the ERC20 assets with their holders.
	Assets []chain.Asset
	// Fund gives an account ether for gas (nil where the chain has no
	// faucet).
	Fund    func(ctx context.Context, addr common.Address) error
	closeFn func()
}

// Close closes the chain connection (and stops an embedded chain).
func (c *Chain) Close() {
	if c.closeFn != nil {
		c.closeFn()
	}
}

// NodeOptions are the options of a node on c with cfg; the caller adds
// what else its node has (metrics, a watchtower key, a cluster lease).
func (c *Chain) NodeOptions(cfg *config.Config, log *slog.Logger) node.Options {
	return node.Options{Config: cfg, Chain: c.Backend, Contracts: c.Contracts, Assets: c.Assets, Fund: c.Fund, Logger: log}
}

// Deployer returns the key that pays for deployments; Dial calls it only
// when a contract is to be deployed (nil: deploying is refused).
type Deployer func() (*ecdsa.PrivateKey, error)

// Connect connects to cfg's chain: the embedded one (started with o) or
// the one at chain.url (Dial).
func Connect(ctx context.Context, cfg *config.Config, o EmbeddedOptions, deployer Deployer, log *slog.Logger) (*Chain, error) {
	if cfg.Chain.URL == config.Embedded {
		if o.BlockInterval == 0 {
			o.BlockInterval = cfg.Chain.BlockInterval
		}
		o.DataDir = cfg.DataDir
		return StartEmbedded(ctx, o)
	}
	return Dial(ctx, cfg, deployer, log)
}

// Dial connects to the chain at chain.url (reconnecting after outages),
// checks that its id is chain.id, and validates or deploys the contracts
// and the asset holders of the configured ERC20 assets per
// contracts.mode, each deployment chain.confirmations deep.
func Dial(ctx context.Context, cfg *config.Config, deployer Deployer, log *slog.Logger) (_ *Chain, err error) {
	assets := ConfigAssets(cfg)
	deploy := needsDeployment(cfg, assets)
	if deploy && deployer == nil {
		return nil, errors.New("config key contracts.mode: the contracts are to be deployed, but no deployer key was given")
	}
	cl, err := chain.DialReconnecting(ctx, cfg.Chain.URL, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			cl.Close()
		}
	}()
	id, err := CheckChainID(ctx, cl, cfg)
	if err != nil {
		return nil, err
	}
	given := chain.Contracts{
		Adjudicator:    common.HexToAddress(cfg.Contracts.Adjudicator),
		AssetHolderETH: common.HexToAddress(cfg.Contracts.AssetHolderETH),
	}
	var key *ecdsa.PrivateKey
	if deploy {
		if key, err = deployer(); err != nil {
			return nil, err
		}
	} else if key, err = crypto.GenerateKey(); err != nil { // validation sends no transaction
		return nil, fmt.Errorf("validation key: %w", err)
	}
	cb, dep := chain.KeyBackend(cl, id, key, chain.TxPolicy{Confirmations: cfg.Chain.Confirmations})
	c, assets, err := chain.SetupAll(ctx, cb, cfg.Contracts.Mode, given, assets, dep, func(name string, addr common.Address) {
		log.Info("contract deployed", "contract", name, "address", addr.Hex())
	})
	if err != nil {
		return nil, err
	}
	return &Chain{Backend: cl, Contracts: c, Assets: assets, closeFn: cl.Close}, nil
}

// CheckChainID reads the id of the chain cl is connected to and refuses
// it unless it is chain.id: contracts and signatures are bound to one
// chain.
func CheckChainID(ctx context.Context, cl interface {
	ChainID(context.Context) (*big.Int, error)
}, cfg *config.Config) (*big.Int, error) {
	id, err := cl.ChainID(ctx)
	if err != nil {
		return nil, fmt.Errorf("read chain id: %w", err)
	}
	if !id.IsUint64() || id.Uint64() != cfg.Chain.ID {
		return nil, fmt.Errorf("config key chain.id: %d, but the chain at %s has id %s", cfg.Chain.ID, chain.RedactURL(cfg.Chain.URL), id)
	}
	return id, nil
}

// needsDeployment reports whether contracts.mode asks to deploy, or to
// deploy what the configuration does not name.
func needsDeployment(cfg *config.Config, assets []chain.Asset) bool {
	switch cfg.Contracts.Mode {
	case config.ModeDeploy:
		return true
	case config.ModeValidateOrDeploy:
		if cfg.Contracts.Adjudicator == "" || cfg.Contracts.AssetHolderETH == "" {
			return true
		}
		for _, a := range assets {
			if a.Holder == (common.Address{}) {
				return true
			}
		}
	}
	return false
}

// ConfigAssets are the configuration's ERC20 assets (a holder not given is
// zero).
func ConfigAssets(cfg *config.Config) []chain.Asset {
	out := make([]chain.Asset, 0, len(cfg.Assets))
	for _, a := range cfg.Assets {
		asset := chain.Asset{Symbol: a.Symbol, Token: common.HexToAddress(a.Token), Decimals: a.Decimals}
		if a.AssetHolder != "" {
			asset.Holder = common.HexToAddress(a.AssetHolder)
		}
		out = append(out, asset)
	}
	return out
}

// EmbeddedOptions configure StartEmbedded.
type EmbeddedOptions struct {
	// DataDir keeps the chain in DataDir/chain and its deployment record
	// in DataDir; empty means in memory, deployed afresh.
	DataDir string
	// BlockInterval is the empty-block interval (default 100 ms).
	BlockInterval time.Duration
	// Alloc funds accounts in the genesis block.
	Alloc map[common.Address]*big.Int
	// TokenHolders, when not empty, get TokenAmount of a test ERC20 token
	// named TokenSymbol (default PRN), deployed with its asset holder.
	TokenHolders []common.Address
	TokenAmount  *big.Int
	TokenSymbol  string
	// FundAmount is what Chain.Fund gives an account (default 100 ETH).
	FundAmount *big.Int
}

// StartEmbedded starts the embedded chain. On the first start it deploys
// the contracts (and the test token); a chain kept in a data dir finds
// them again at later starts through the data dir's deployment record,
// which node.New writes (a start whose node never came up deploys again
// at the next one).
func StartEmbedded(ctx context.Context, o EmbeddedOptions) (_ *Chain, err error) {
	if o.BlockInterval == 0 {
		o.BlockInterval = 100 * time.Millisecond
	}
	if o.TokenSymbol == "" {
		o.TokenSymbol = "PRN"
	}
	if o.FundAmount == nil {
		o.FundAmount = new(big.Int).Mul(big.NewInt(100), chain.Ether)
	}
	eo := chain.EmbeddedOptions{Alloc: o.Alloc, BlockInterval: o.BlockInterval}
	if o.DataDir != "" {
		eo.DataDir = filepath.Join(o.DataDir, "chain")
	}
	e, err := chain.NewEmbedded(eo)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	c := &Chain{Backend: e, Embedded: e, closeFn: func() { e.Close() }}
	c.Fund = func(ctx context.Context, a common.Address) error { return e.Fund(ctx, a, o.FundAmount) }
	if c.Contracts, c.Assets, err = embeddedContracts(ctx, e, o); err != nil {
		return nil, err
	}
	return c, nil
}

// embeddedContracts finds the contracts of an earlier start of a chain
// kept in o.DataDir, or deploys them.
func embeddedContracts(ctx context.Context, e *chain.Embedded, o EmbeddedOptions) (chain.Contracts, []chain.Asset, error) {
	if o.DataDir != "" {
		rec, ok, err := chain.LoadDeployment(o.DataDir)
		if err != nil {
			return chain.Contracts{}, nil, err
		}
		if ok {
			code, err := e.CodeAt(ctx, rec.Contracts.Adjudicator, nil)
			if err != nil {
				return chain.Contracts{}, nil, fmt.Errorf("read the adjudicator of %s on the embedded chain: %w", o.DataDir, err)
			}
			if len(code) > 0 {
				id, err := e.ChainID(ctx)
				if err != nil {
					return chain.Contracts{}, nil, fmt.Errorf("read the embedded chain's id: %w", err)
				}
				cb, dep := chain.DeployerBackend(e, id, e.Faucet())
				return chain.SetupAll(ctx, cb, config.ModeValidate, rec.Contracts, rec.Assets, dep, nil)
			}
			// The chain is not the one the data dir was written for (it
			// predates the chain's own persistence): deploy afresh, and the
			// node refuses the data dir, naming its channels.
		}
	}
	return e.DeployAll(ctx, o.TokenHolders, o.TokenAmount, o.TokenSymbol)
}
