// Package chain connects perund to Ethereum: an in-process simulated chain
// (embedded) or a real node by WebSocket URL, and the Perun contracts on it.
package chain

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/accounts"
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
		return nil, fmt.Errorf("dial chain %s: %w", url, err)
	}
	return c, nil
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

// DeployerBackend returns a contract backend that signs with key.
func DeployerBackend(b Backend, chainID *big.Int, key *ecdsa.PrivateKey) (ethchannel.ContractBackend, accounts.Account) {
	w := simple.NewWallet(key)
	tr := simple.NewTransactor(w, types.LatestSignerForChainID(chainID))
	return ethchannel.NewContractBackend(b, ethchannel.MakeChainID(chainID), tr, 1),
		accounts.Account{Address: crypto.PubkeyToAddress(key.PublicKey)}
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
