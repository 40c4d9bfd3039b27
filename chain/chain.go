// Package chain connects perund to Ethereum: an in-process simulated chain
// (embedded) or a real node by WebSocket URL, and the Perun contracts on it.
package chain

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"math/big"
	neturl "net/url"
	"strings"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/params"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	"github.com/perun-network/perun-eth-backend/wallet/simple"
)

// Backend is what perund needs of a chain connection.
type Backend interface {
	ethchannel.ContractInterface
	ChainID(ctx context.Context) (*big.Int, error)
	BalanceAt(ctx context.Context, account common.Address, blockNumber *big.Int) (*big.Int, error)
}

// Ether is 10^18 wei.
var Ether = big.NewInt(params.Ether)

// Fees returns a dynamic-fee transaction's tip and fee cap from the
// chain's own suggestions: the suggested tip, and a cap of twice the head's
// base fee plus the tip, which stays valid for several full blocks.
func Fees(ctx context.Context, b interface {
	SuggestGasTipCap(context.Context) (*big.Int, error)
	HeaderByNumber(context.Context, *big.Int) (*types.Header, error)
}) (tip, feeCap *big.Int, err error) {
	if tip, err = b.SuggestGasTipCap(ctx); err != nil {
		return nil, nil, fmt.Errorf("suggested gas tip: %w", err)
	}
	head, err := b.HeaderByNumber(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("head block: %w", err)
	}
	feeCap = new(big.Int).Set(tip)
	if head.BaseFee != nil {
		feeCap.Add(feeCap, new(big.Int).Mul(head.BaseFee, big.NewInt(2)))
	}
	return tip, feeCap, nil
}

// Dial connects to an Ethereum node by WebSocket URL.
func Dial(ctx context.Context, url string) (*ethclient.Client, error) {
	c, err := ethclient.DialContext(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("dial chain %s: %w", RedactURL(url), err)
	}
	return c, nil
}

// RedactURL is a chain URL as logs and errors show it: its scheme and
// host, without user info, path, query or fragment (a provider's API key
// is often one of them), which are replaced by "/…". A plain word (the
// configuration's "embedded") is shown as it is.
func RedactURL(raw string) string {
	if raw != "" && !strings.ContainsAny(raw, "/@?#:") {
		return raw // a word such as "embedded", no URL
	}
	u, err := neturl.Parse(raw)
	if err != nil || u.Host == "" {
		return "(a chain URL that does not parse)"
	}
	shown := u.Scheme + "://" + u.Host
	if u.User != nil || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		shown += "/…"
	}
	return shown
}

// Contracts are the addresses of the Perun contracts in use.
type Contracts struct {
	Adjudicator    common.Address
	AssetHolderETH common.Address
}

// SetupContracts validates or deploys the contracts per mode ("validate",
// "deploy" or "validateOrDeploy": validate when both addresses are given,
// deploy otherwise). deployer must be unlocked in the transactor of cb.
func SetupContracts(ctx context.Context, cb ethchannel.ContractBackend, mode string, given Contracts, deployer accounts.Account) (Contracts, error) {
	zero := common.Address{}
	validate := mode == "validate" || mode == "validateOrDeploy" && given.Adjudicator != zero && given.AssetHolderETH != zero
	if validate {
		if err := ethchannel.ValidateAdjudicator(ctx, cb, given.Adjudicator); err != nil {
			return Contracts{}, fmt.Errorf("validate adjudicator %s: %w", given.Adjudicator.Hex(), err)
		}
		if err := ethchannel.ValidateAssetHolderETH(ctx, cb, given.AssetHolderETH, given.Adjudicator); err != nil {
			return Contracts{}, fmt.Errorf("validate ETH asset holder %s: %w", given.AssetHolderETH.Hex(), err)
		}
		return given, nil
	}
	adj, err := ethchannel.DeployAdjudicator(ctx, cb, deployer)
	if err != nil {
		return Contracts{}, fmt.Errorf("deploy adjudicator: %w", err)
	}
	ah, err := ethchannel.DeployETHAssetholder(ctx, cb, adj, deployer)
	if err != nil {
		return Contracts{}, fmt.Errorf("deploy ETH asset holder: %w", err)
	}
	return Contracts{Adjudicator: adj, AssetHolderETH: ah}, nil
}

// DeployerBackend returns a contract backend that signs with key and
// counts a transaction once it is in a block (TxPolicy{}).
func DeployerBackend(b ethchannel.ContractInterface, chainID *big.Int, key *ecdsa.PrivateKey) (ethchannel.ContractBackend, accounts.Account) {
	return KeyBackend(b, chainID, key, TxPolicy{})
}

// TxPolicy is how a contract backend sends transactions: the blocks it
// waits for and the fees it may pay. The zero value waits for inclusion
// and pays the chain's suggestions.
type TxPolicy struct {
	// Confirmations is how many blocks deep a transaction (and an event
	// the backend waits for, such as a deposit) must be; 0 means 1.
	Confirmations uint64
	// MaxFeePerGas caps the fee per gas (nil: twice the base fee plus the
	// tip).
	MaxFeePerGas *big.Int
	// MaxPriorityFeePerGas is the tip per gas (nil: the chain's suggestion).
	MaxPriorityFeePerGas *big.Int
}

// depth is the backend's transaction finality depth.
func (p TxPolicy) depth() uint64 { return max(p.Confirmations, 1) }

// KeyBackend returns a contract backend that signs with key and sends per
// policy p.
func KeyBackend(b ethchannel.ContractInterface, chainID *big.Int, key *ecdsa.PrivateKey, p TxPolicy) (ethchannel.ContractBackend, accounts.Account) {
	w := simple.NewWallet(key)
	var tr ethchannel.Transactor = simple.NewTransactor(w, types.LatestSignerForChainID(chainID))
	if p.MaxFeePerGas != nil || p.MaxPriorityFeePerGas != nil {
		tr = feeCapped{Transactor: tr, feeCap: p.MaxFeePerGas, tip: p.MaxPriorityFeePerGas}
	}
	return ethchannel.NewContractBackend(b, ethchannel.MakeChainID(chainID), tr, p.depth()),
		accounts.Account{Address: crypto.PubkeyToAddress(key.PublicKey)}
}

// feeCapped sets the fee cap and the tip of every transaction; go-ethereum
// fills in what is left nil from the chain's suggestions.
type feeCapped struct {
	ethchannel.Transactor
	feeCap, tip *big.Int
}

// NewTransactor returns the inner transactor's options with the fees set.
func (f feeCapped) NewTransactor(acc accounts.Account) (*bind.TransactOpts, error) {
	opts, err := f.Transactor.NewTransactor(acc)
	if err != nil {
		return nil, err
	}
	if f.feeCap != nil {
		opts.GasFeeCap = new(big.Int).Set(f.feeCap)
	}
	if f.tip != nil {
		opts.GasTipCap = new(big.Int).Set(f.tip)
	}
	return opts, nil
}

// ResetNonce forgets the perun backend's process-wide expectation of addr's
// next nonce on chain id, so the next transaction uses the chain's pending
// nonce. perund calls it when a session starts (one session per account)
// and after a failed transaction, which leaves a gap in the expectation.
func ResetNonce(id *big.Int, addr common.Address) {
	key := ethchannel.MakeChainID(id).MapKey()
	ethchannel.SharedExpectedNoncesMutex.Lock()
	defer ethchannel.SharedExpectedNoncesMutex.Unlock()
	if m, ok := ethchannel.SharedExpectedNonces[key]; ok {
		delete(m, addr)
	}
}

// Deploy deploys fresh contracts on the embedded chain, paid by the
// faucet. It returns the faucet's contract backend and account for further
// deployments.
func (e *Embedded) Deploy(ctx context.Context) (ethchannel.ContractBackend, accounts.Account, Contracts, error) {
	c, _, err := e.DeployAll(ctx, nil, nil, "")
	id, _ := e.ChainID(ctx)
	cb, dep := DeployerBackend(e, id, e.Faucet())
	return cb, dep, c, err
}
