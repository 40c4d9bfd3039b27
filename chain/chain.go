// Package chain connects perund to Ethereum: an in-process simulated chain
// (embedded) or a real node by WebSocket URL, and the Perun contracts on it.
package chain

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/backends"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core"
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

// EmbeddedGasLimit is the block gas limit of the embedded chain.
const EmbeddedGasLimit = 30_000_000

// ErrRejected wraps a transaction the embedded chain refuses before mining.
var ErrRejected = errors.New("transaction rejected")

// Embedded is an in-process simulated chain (go-ethereum's simulated
// backend). Every transaction is mined in a block of its own at once, and an
// empty block is mined every block interval, so timeouts measured in block
// time keep running. Each block advances block time by 10 seconds.
type Embedded struct {
	*backends.SimulatedBackend
	mu     sync.Mutex
	signer types.Signer
	faucet *ecdsa.PrivateKey
	stop   chan struct{}
	done   chan struct{}
}

// NewEmbedded starts an embedded chain whose genesis funds alloc, plus a
// faucet account used for deployments and Fund.
func NewEmbedded(alloc map[common.Address]*big.Int, blockInterval time.Duration) (*Embedded, error) {
	faucet, err := crypto.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("faucet key: %w", err)
	}
	genesis := core.GenesisAlloc{}
	for a, v := range alloc {
		genesis[a] = core.GenesisAccount{Balance: new(big.Int).Set(v)}
	}
	faucetFunds := new(big.Int).Mul(big.NewInt(1_000_000_000), Ether)
	genesis[crypto.PubkeyToAddress(faucet.PublicKey)] = core.GenesisAccount{Balance: faucetFunds}
	sb := backends.NewSimulatedBackend(genesis, EmbeddedGasLimit)
	e := &Embedded{
		SimulatedBackend: sb,
		signer:           types.LatestSignerForChainID(sb.Blockchain().Config().ChainID),
		faucet:           faucet,
		stop:             make(chan struct{}),
		done:             make(chan struct{}),
	}
	go e.mine(blockInterval)
	return e, nil
}

func (e *Embedded) mine(interval time.Duration) {
	defer close(e.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.mu.Lock()
			e.SimulatedBackend.Commit()
			e.mu.Unlock()
		}
	}
}

// Close stops mining and closes the chain.
func (e *Embedded) Close() error {
	select {
	case <-e.stop:
		return nil
	default:
	}
	close(e.stop)
	<-e.done
	return e.SimulatedBackend.Close()
}

// ChainID returns the chain id (1337).
func (e *Embedded) ChainID(context.Context) (*big.Int, error) {
	return e.SimulatedBackend.Blockchain().Config().ChainID, nil
}

// Signer returns the London signer of the chain.
func (e *Embedded) Signer() types.Signer { return e.signer }

// Faucet returns the faucet's key (the deployer of the embedded contracts).
func (e *Embedded) Faucet() *ecdsa.PrivateKey { return e.faucet }

// SendTransaction checks tx as a node's transaction pool would, then mines
// it in a block of its own. The simulated backend panics on an invalid
// transaction; here such a transaction is an error and nothing changes.
func (e *Embedded) SendTransaction(ctx context.Context, tx *types.Transaction) (err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	from, err := types.Sender(e.signer, tx)
	if err != nil {
		return fmt.Errorf("%w: bad signature: %v", ErrRejected, err)
	}
	nonce, err := e.SimulatedBackend.PendingNonceAt(ctx, from)
	if err != nil {
		return fmt.Errorf("send transaction: %w", err)
	}
	if tx.Nonce() != nonce {
		return fmt.Errorf("%w: nonce %d of %s, want %d", ErrRejected, tx.Nonce(), from.Hex(), nonce)
	}
	bal, err := e.SimulatedBackend.BalanceAt(ctx, from, nil)
	if err != nil {
		return fmt.Errorf("send transaction: %w", err)
	}
	if bal.Cmp(tx.Cost()) < 0 {
		return fmt.Errorf("%w: insufficient funds for gas * price + value: %s has %s, needs %s",
			ErrRejected, from.Hex(), bal, tx.Cost())
	}
	if tx.Gas() > EmbeddedGasLimit {
		return fmt.Errorf("%w: gas limit %d above block gas limit", ErrRejected, tx.Gas())
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrRejected, r)
		}
	}()
	if err := e.SimulatedBackend.SendTransaction(ctx, tx); err != nil {
		return fmt.Errorf("send transaction: %w", err)
	}
	e.SimulatedBackend.Commit()
	return nil
}

// Fund sends amount wei from the faucet to addr and waits until it is mined.
func (e *Embedded) Fund(ctx context.Context, addr common.Address, amount *big.Int) error {
	from := crypto.PubkeyToAddress(e.faucet.PublicKey)
	e.mu.Lock()
	nonce, err := e.SimulatedBackend.PendingNonceAt(ctx, from)
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("fund %s: %w", addr.Hex(), err)
	}
	head, err := e.HeaderByNumber(ctx, nil)
	if err != nil {
		return fmt.Errorf("fund %s: %w", addr.Hex(), err)
	}
	feeCap := new(big.Int).Mul(head.BaseFee, big.NewInt(2))
	tx, err := types.SignNewTx(e.faucet, e.signer, &types.DynamicFeeTx{
		ChainID: e.signer.ChainID(), Nonce: nonce, GasTipCap: big.NewInt(1), GasFeeCap: feeCap,
		Gas: params.TxGas, To: &addr, Value: amount,
	})
	if err != nil {
		return fmt.Errorf("fund %s: %w", addr.Hex(), err)
	}
	if err := e.SendTransaction(ctx, tx); err != nil {
		return fmt.Errorf("fund %s: %w", addr.Hex(), err)
	}
	return nil
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
// deployments (a token, its asset holder).
func (e *Embedded) Deploy(ctx context.Context) (ethchannel.ContractBackend, accounts.Account, Contracts, error) {
	id, _ := e.ChainID(ctx)
	cb, dep := DeployerBackend(e, id, e.Faucet())
	c, err := SetupContracts(ctx, cb, "deploy", Contracts{}, dep)
	return cb, dep, c, err
}
