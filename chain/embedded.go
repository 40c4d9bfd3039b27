package chain

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/rawdb"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/eth"
	"github.com/ethereum/go-ethereum/eth/catalyst"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/eth/filters"
	"github.com/ethereum/go-ethereum/ethclient"
	gethlog "github.com/ethereum/go-ethereum/log"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/p2p"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/perun-network/perun-eth-backend/bindings/adjudicator"
	"github.com/perun-network/perun-eth-backend/bindings/assetholdererc20"
	"github.com/perun-network/perun-eth-backend/bindings/assetholdereth"
	"github.com/perun-network/perun-eth-backend/bindings/peruntoken"
)

// EmbeddedGasLimit is the block gas limit of the embedded chain.
const EmbeddedGasLimit = 30_000_000

// EmbeddedChainID is the chain id of the embedded chain.
const EmbeddedChainID = 1337

// ErrRejected wraps a transaction the embedded chain refuses before mining.
var ErrRejected = errors.New("transaction rejected")

// EmbeddedOptions configure an embedded chain.
type EmbeddedOptions struct {
	// Alloc funds accounts in the genesis block.
	Alloc map[common.Address]*big.Int
	// BlockInterval is how often an empty block is sealed (once the clock
	// has passed the head's time).
	BlockInterval time.Duration
	// DataDir keeps the chain (and its faucet key) on disk; empty means in
	// memory. A chain reopened from DataDir must be given the same Alloc.
	DataDir string
}

// Embedded is an in-process Ethereum chain: a go-ethereum node with the
// simulated beacon of `geth --dev`, on mainnet's current fork set (no
// future fork). A transaction is sealed into a block at once, and an empty
// block follows every block interval, so timeouts in block time keep
// running. Block times follow the wall clock: a block is stamped with the
// current second, and a block sealed while the head already carries the
// current second gets the next one, so chain time is never more than one
// second ahead of the clock (bursts of transactions share a block then).
type Embedded struct {
	*ethclient.Client
	stack   *node.Node
	eth     *eth.Ethereum
	beacon  *catalyst.SimulatedBeacon
	signer  types.Signer
	faucet  *ecdsa.PrivateKey
	durable bool

	mu       sync.Mutex // serialises sealing
	faucetMu sync.Mutex // one faucet transaction at a time
	kick     chan struct{}
	stop     chan struct{}
	done     chan struct{}
}

// embeddedConfig is mainnet's fork set as of go-ethereum 1.17 (Osaka with
// the BPO1 and BPO2 blob schedules) from genesis, with chain id 1337 and no
// future fork: the development config also enables an unreleased fork
// under which the Perun ETH deposit runs out of gas.
func embeddedConfig() *params.ChainConfig {
	c := *params.AllDevChainProtocolChanges
	zero := uint64(0)
	c.ChainID = big.NewInt(EmbeddedChainID)
	c.BogotaTime = nil
	c.BPO1Time, c.BPO2Time = &zero, &zero
	c.BlobScheduleConfig = params.MainnetChainConfig.BlobScheduleConfig
	return &c
}

// NewEmbedded starts an embedded chain whose genesis funds opts.Alloc, plus a
// faucet account used for deployments and Fund.
func NewEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	if opts.BlockInterval <= 0 {
		opts.BlockInterval = time.Second
	}
	faucet, err := faucetKey(opts.DataDir)
	if err != nil {
		return nil, err
	}
	alloc := core.SystemContractAllocs()
	for a, v := range opts.Alloc {
		alloc[a] = types.Account{Balance: new(big.Int).Set(v)}
	}
	faucetFunds := new(big.Int).Mul(big.NewInt(1_000_000_000), Ether)
	alloc[crypto.PubkeyToAddress(faucet.PublicKey)] = types.Account{Balance: faucetFunds}

	nodeConf := node.DefaultConfig
	nodeConf.DataDir = ""
	if opts.DataDir != "" {
		nodeConf.DataDir = filepath.Join(opts.DataDir, "geth")
	}
	nodeConf.IPCPath = ""
	nodeConf.P2P = p2p.Config{NoDiscovery: true, MaxPeers: 0}
	nodeConf.Logger = gethlog.NewLogger(gethlog.DiscardHandler())
	ethConf := ethconfig.Defaults
	ethConf.Genesis = &core.Genesis{Config: embeddedConfig(), GasLimit: EmbeddedGasLimit, Alloc: alloc}
	ethConf.Miner.GasCeil = EmbeddedGasLimit
	ethConf.SyncMode = ethconfig.FullSync
	ethConf.TxPool.NoLocals = true
	// No log index: log filters search the few blocks they ask for, and a
	// reopened index is loaded at start (slow, and very slow under -race).
	ethConf.LogNoHistory = true
	// Every block's state is written to disk as the block is sealed
	// (archive mode of the hash scheme), so a chain killed at any moment
	// reopens at its last block.
	ethConf.NoPruning = true
	ethConf.StateScheme = rawdb.HashScheme
	// A dev chain is small: go-ethereum's defaults (a 2 GiB database cache)
	// would make pebble preallocate write-ahead logs of hundreds of MiB each.
	ethConf.DatabaseCache, ethConf.DatabaseHandles = 16, 64
	ethConf.TrieCleanCache, ethConf.TrieDirtyCache = 16, 16
	// No state snapshot: after a restart go-ethereum would regenerate it in
	// the background, which is slow (and starves the in-process RPC) for no
	// gain on a chain this small.
	ethConf.SnapshotCache = 0

	stack, err := node.New(&nodeConf)
	if err != nil {
		return nil, fmt.Errorf("embedded chain: %w", err)
	}
	backend, err := eth.New(stack, &ethConf)
	if err != nil {
		stack.Close()
		return nil, fmt.Errorf("embedded chain: %w", err)
	}
	stack.RegisterAPIs([]rpc.API{{
		Namespace: "eth",
		Service:   filters.NewFilterAPI(filters.NewFilterSystem(backend.APIBackend, filters.Config{})),
	}})
	if err := stack.Start(); err != nil {
		stack.Close()
		return nil, fmt.Errorf("embedded chain: start: %w", err)
	}
	// Period 0: the beacon seals only when asked (by the loop below).
	beacon, err := catalyst.NewSimulatedBeacon(0, common.Address{}, backend)
	if err != nil {
		stack.Close()
		return nil, fmt.Errorf("embedded chain: beacon: %w", err)
	}
	e := &Embedded{
		Client:  ethclient.NewClient(stack.Attach()),
		stack:   stack,
		eth:     backend,
		beacon:  beacon,
		signer:  types.LatestSignerForChainID(big.NewInt(EmbeddedChainID)),
		faucet:  faucet,
		durable: opts.DataDir != "",
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go e.mine(opts.BlockInterval)
	return e, nil
}

// faucetKey loads the faucet key of the chain in dir, creating it on first
// use; with no dir it is a fresh key.
func faucetKey(dir string) (*ecdsa.PrivateKey, error) {
	if dir == "" {
		return crypto.GenerateKey()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded chain data dir: %w", err)
	}
	path := filepath.Join(dir, "faucet.key")
	k, err := crypto.LoadECDSA(path)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("embedded chain faucet key %s: %w", path, err)
	}
	if k, err = crypto.GenerateKey(); err != nil {
		return nil, err
	}
	if err := crypto.SaveECDSA(path, k); err != nil {
		return nil, fmt.Errorf("embedded chain faucet key %s: %w", path, err)
	}
	return k, nil
}

// mine seals a block when a transaction is waiting and the head is not yet
// ahead of the clock, and an empty block every interval once the clock has
// passed the head's time.
func (e *Embedded) mine(interval time.Duration) {
	defer close(e.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	pending := false
	for {
		select {
		case <-e.stop:
			return
		case <-e.kick:
			pending = true
		case <-tick.C:
		case <-retry.C:
		}
		head := e.eth.BlockChain().CurrentBlock().Time
		now := uint64(time.Now().Unix())
		switch {
		case pending && head <= now, head < now:
			e.commit()
			pending = false
		case pending:
			// The head already carries the next second: wait for it.
			next := time.Unix(int64(head), 0)
			retry.Reset(time.Until(next) + time.Millisecond)
		}
	}
}

// commit seals a block and, for a chain on disk, syncs the database, so
// that a process killed right after a transaction finds its block again.
func (e *Embedded) commit() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.beacon.Commit()
	if e.durable {
		_ = e.eth.ChainDb().SyncKeyValue() // an error shows on the next write
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
	e.Client.Close()
	return errors.Join(e.beacon.Stop(), e.stack.Close())
}

// ChainID returns the chain id (1337).
func (e *Embedded) ChainID(context.Context) (*big.Int, error) {
	return big.NewInt(EmbeddedChainID), nil
}

// Signer returns the latest signer of the chain.
func (e *Embedded) Signer() types.Signer { return e.signer }

// Faucet returns the faucet's key (the deployer of the embedded contracts).
func (e *Embedded) Faucet() *ecdsa.PrivateKey { return e.faucet }

// SendTransaction hands tx to the chain's transaction pool, which checks it
// as any node's would (a refusal wraps ErrRejected), and has it sealed.
func (e *Embedded) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	if err := e.Client.SendTransaction(ctx, tx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("send transaction: %w", err)
		}
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	select {
	case e.kick <- struct{}{}:
	default:
	}
	return nil
}

// Fund sends amount wei from the faucet to addr and waits until it is mined.
func (e *Embedded) Fund(ctx context.Context, addr common.Address, amount *big.Int) error {
	from := crypto.PubkeyToAddress(e.faucet.PublicKey)
	e.faucetMu.Lock()
	defer e.faucetMu.Unlock()
	nonce, err := e.PendingNonceAt(ctx, from)
	if err != nil {
		return fmt.Errorf("fund %s: %w", addr.Hex(), err)
	}
	tip, feeCap, err := Fees(ctx, e)
	if err != nil {
		return fmt.Errorf("fund %s: %w", addr.Hex(), err)
	}
	tx, err := types.SignNewTx(e.faucet, e.signer, &types.DynamicFeeTx{
		ChainID: e.signer.ChainID(), Nonce: nonce, GasTipCap: tip, GasFeeCap: feeCap,
		Gas: params.TxGas, To: &addr, Value: amount,
	})
	if err != nil {
		return fmt.Errorf("fund %s: %w", addr.Hex(), err)
	}
	if err := e.SendTransaction(ctx, tx); err != nil {
		return fmt.Errorf("fund %s: %w", addr.Hex(), err)
	}
	if _, err := bind.WaitMinedHash(ctx, e, tx.Hash()); err != nil {
		return fmt.Errorf("fund %s: wait for the transaction: %w", addr.Hex(), err)
	}
	return nil
}

// deployGasLimit bounds each contract deployment (as perun-eth-backend's
// own deploy functions do).
const deployGasLimit = 6_600_000

// DeployAll deploys the Perun contracts on the embedded chain, paid by the
// faucet, and, when tokenHolders is not empty, perun's test ERC20 token
// giving each holder tokenAmount, with its asset holder (symbol). All
// transactions are sent before any is awaited, so they share a block or
// two: on a chain whose block times follow the clock, waiting for each
// deployment would cost a second per contract.
func (e *Embedded) DeployAll(ctx context.Context, tokenHolders []common.Address, tokenAmount *big.Int, symbol string) (Contracts, []Asset, error) {
	id, _ := e.ChainID(ctx)
	cb, dep := DeployerBackend(e, id, e.Faucet())
	var txs []*types.Transaction
	deploy := func(name string, f func(*bind.TransactOpts) (common.Address, *types.Transaction, error)) (common.Address, error) {
		auth, err := cb.NewTransactor(ctx, deployGasLimit, dep)
		if err != nil {
			return common.Address{}, fmt.Errorf("deploy %s: %w", name, err)
		}
		addr, tx, err := f(auth)
		if err != nil {
			ResetNonce(id, dep.Address)
			return common.Address{}, fmt.Errorf("deploy %s: %w", name, err)
		}
		txs = append(txs, tx)
		return addr, nil
	}
	var c Contracts
	var err error
	if c.Adjudicator, err = deploy("adjudicator", func(a *bind.TransactOpts) (common.Address, *types.Transaction, error) {
		addr, tx, _, err := adjudicator.DeployAdjudicator(a, e)
		return addr, tx, err
	}); err != nil {
		return Contracts{}, nil, err
	}
	if c.AssetHolderETH, err = deploy("ETH asset holder", func(a *bind.TransactOpts) (common.Address, *types.Transaction, error) {
		addr, tx, _, err := assetholdereth.DeployAssetholdereth(a, e, c.Adjudicator)
		return addr, tx, err
	}); err != nil {
		return Contracts{}, nil, err
	}
	var assets []Asset
	if len(tokenHolders) > 0 {
		asset := Asset{Symbol: symbol, Decimals: 18}
		if asset.Token, err = deploy("token", func(a *bind.TransactOpts) (common.Address, *types.Transaction, error) {
			addr, tx, _, err := peruntoken.DeployPeruntoken(a, e, tokenHolders, tokenAmount)
			return addr, tx, err
		}); err != nil {
			return Contracts{}, nil, err
		}
		if asset.Holder, err = deploy(symbol+" asset holder", func(a *bind.TransactOpts) (common.Address, *types.Transaction, error) {
			addr, tx, _, err := assetholdererc20.DeployAssetholdererc20(a, e, c.Adjudicator, asset.Token)
			return addr, tx, err
		}); err != nil {
			return Contracts{}, nil, err
		}
		assets = append(assets, asset)
	}
	for _, tx := range txs {
		r, err := bind.WaitMinedHash(ctx, e, tx.Hash())
		if err != nil {
			return Contracts{}, nil, fmt.Errorf("deploy contracts: wait for %s: %w", tx.Hash().Hex(), err)
		}
		if r.Status != types.ReceiptStatusSuccessful {
			return Contracts{}, nil, fmt.Errorf("deploy contracts: transaction %s failed", tx.Hash().Hex())
		}
	}
	// Validated as on any chain: the code at each address is the expected one.
	if _, err := SetupContracts(ctx, cb, "validate", c, dep); err != nil {
		return Contracts{}, nil, err
	}
	for _, a := range assets {
		if _, err := SetupERC20(ctx, cb, "validate", c.Adjudicator, a, dep); err != nil {
			return Contracts{}, nil, err
		}
	}
	return c, assets, nil
}

// SubscribeNewHead subscribes to new heads. A failed subscription (the
// chain is closing) is returned as one that is already over:
// perun-eth-backend calls Unsubscribe on it even when subscribing failed.
func (e *Embedded) SubscribeNewHead(ctx context.Context, ch chan<- *types.Header) (ethereum.Subscription, error) {
	s, err := relay(func(in chan<- *types.Header) (ethereum.Subscription, error) {
		return e.Client.SubscribeNewHead(ctx, in)
	}, ch)
	if err != nil {
		return failedSubscription{}, fmt.Errorf("subscribe to heads: %w", err)
	}
	return s, nil
}

// SubscribeFilterLogs subscribes to logs, like SubscribeNewHead. Both
// subscribe through relay (see there: go-ethereum's client keeps every
// subscription).
func (e *Embedded) SubscribeFilterLogs(ctx context.Context, q ethereum.FilterQuery, ch chan<- types.Log) (ethereum.Subscription, error) {
	s, err := relay(func(in chan<- types.Log) (ethereum.Subscription, error) {
		return e.Client.SubscribeFilterLogs(ctx, q, in)
	}, ch)
	if err != nil {
		return failedSubscription{}, fmt.Errorf("subscribe to logs: %w", err)
	}
	return s, nil
}
