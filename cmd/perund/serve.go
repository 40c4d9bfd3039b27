package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/cluster"
	"github.com/perund/perund/config"
	"github.com/perund/perund/contacts"
	"github.com/perund/perund/keys"
	"github.com/perund/perund/metrics"
	"github.com/perund/perund/node"
	"github.com/perund/perund/perunlog"
	"github.com/perund/perund/rpc"
	"github.com/perund/perund/web"
)

// Demo users of perund dev: anvil's test keys #1 and #2.
var demoUsers = []struct{ name, key string }{
	{"alice", "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"},
	{"bob", "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"},
}

type setFlags map[string]any

func (s setFlags) String() string { return "" }
func (s setFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("--set wants key=value, got %q", v)
	}
	s[k] = val
	return nil
}

type cliFlags struct {
	fs *flag.FlagSet
	// cfgFiles are the --config files, each over the one before.
	cfgFiles []string
	sets     setFlags
	listen   string
	dataDir  string
	level    string
}

func newFlags(name string) *cliFlags {
	f := &cliFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError), sets: setFlags{}}
	f.fs.Func("config", "YAML configuration file (repeatable: each over the one before, e.g. --config perund.yaml --config contracts.yaml)", func(v string) error {
		f.cfgFiles = append(f.cfgFiles, v)
		return nil
	})
	f.fs.Var(f.sets, "set", "override a configuration key: --set key=value (repeatable)")
	f.fs.StringVar(&f.listen, "listen", "", "rpc.listen")
	f.fs.StringVar(&f.dataDir, "data-dir", "", "dataDir")
	f.fs.StringVar(&f.level, "log-level", "", "log.level")
	return f
}

func (f *cliFlags) overrides() map[string]any {
	m := map[string]any{}
	for k, v := range f.sets {
		m[k] = v
	}
	if f.listen != "" {
		m["rpc.listen"] = f.listen
	}
	if f.dataDir != "" {
		m["dataDir"] = f.dataDir
	}
	if f.level != "" {
		m["log.level"] = f.level
	}
	return m
}

func newLogger(cfg *config.Config) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func runNode(args []string) error {
	f := newFlags("run")
	if err := f.fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(config.Sources{Files: f.cfgFiles, Env: os.Environ(), Flags: f.overrides()})
	if err != nil {
		return err
	}
	return serve(cfg, nil)
}

func runDev(args []string) error {
	f := newFlags("dev")
	if err := f.fs.Parse(args); err != nil {
		return err
	}
	over := f.overrides()
	tmp := ""
	if _, ok := over["dataDir"]; !ok {
		d, err := os.MkdirTemp("", "perund-dev-*")
		if err != nil {
			return fmt.Errorf("create temporary data dir: %w", err)
		}
		tmp = d
		over["dataDir"] = d
	}
	if tmp != "" {
		defer os.RemoveAll(tmp)
	}
	cfg, err := config.Load(config.Sources{
		Base: map[string]any{"keystore": map[string]any{"lightKdf": true}, "allowAccountCreation": true,
			"channel": map[string]any{"challengeDuration": 60},
			// One node, all users on loopback: any free port.
			"comm": map[string]any{"listen": "127.0.0.1:0"}},
		Files: f.cfgFiles, Env: os.Environ(), Flags: over,
	})
	if err != nil {
		return err
	}
	if cfg.Chain.URL != config.Embedded {
		return errors.New("perund dev runs on the embedded chain; use perund run for chain.url")
	}
	return serve(cfg, demoUsers)
}

// backend is a connected chain with its contracts.
type backend struct {
	chain     chain.Backend
	contracts chain.Contracts
	assets    []chain.Asset
	fund      func(ctx context.Context, addr common.Address) error
	close     func()
}

func connect(ctx context.Context, cfg *config.Config, ks *keys.Store, demo []common.Address, log *slog.Logger) (*backend, error) {
	given := chain.Contracts{
		Adjudicator:    common.HexToAddress(cfg.Contracts.Adjudicator),
		AssetHolderETH: common.HexToAddress(cfg.Contracts.AssetHolderETH),
	}
	if cfg.Chain.URL == config.Embedded {
		return connectEmbedded(ctx, cfg, demo)
	}
	cl, err := chain.DialReconnecting(ctx, cfg.Chain.URL, log)
	if err != nil {
		return nil, err
	}
	id, err := cl.ChainID(ctx)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("read chain id: %w", err)
	}
	if id.Uint64() != cfg.Chain.ID {
		cl.Close()
		return nil, fmt.Errorf("config key chain.id: %d, but the chain at %s has id %s", cfg.Chain.ID, cfg.Chain.URL, id)
	}
	assets := configAssets(cfg)
	anyHolderMissing := false
	for _, a := range assets {
		anyHolderMissing = anyHolderMissing || a.Holder == (common.Address{})
	}
	needDeploy := cfg.Contracts.Mode == config.ModeDeploy ||
		cfg.Contracts.Mode == config.ModeValidateOrDeploy && (cfg.Contracts.Adjudicator == "" || cfg.Contracts.AssetHolderETH == "" || anyHolderMissing)
	var key *ecdsa.PrivateKey
	if needDeploy {
		if key, err = unlockDeployer(cfg, ks, false); err != nil {
			cl.Close()
			return nil, err
		}
	} else if key, err = crypto.GenerateKey(); err != nil { // validation sends no transaction
		cl.Close()
		return nil, err
	}
	cb, dep := chain.KeyBackend(cl, id, key, chain.TxPolicy{Confirmations: cfg.Chain.Confirmations})
	c, assets, err := chain.SetupAll(ctx, cb, cfg.Contracts.Mode, given, assets, dep, func(name string, addr common.Address) {
		log.Info("contract deployed", "contract", name, "address", addr.Hex())
	})
	if err != nil {
		cl.Close()
		return nil, err
	}
	return &backend{chain: cl, contracts: c, assets: assets, close: cl.Close}, nil
}

// connectEmbedded starts the embedded chain, keeping its state in the data
// dir. On the first start it deploys the contracts (and for the demo users
// the PRN test token); later starts find them on the chain again through
// the data dir's deployment record.
func connectEmbedded(ctx context.Context, cfg *config.Config, demo []common.Address) (*backend, error) {
	alloc := map[common.Address]*big.Int{}
	hundred := new(big.Int).Mul(big.NewInt(100), chain.Ether)
	for _, a := range demo {
		alloc[a] = hundred
	}
	e, err := chain.NewEmbedded(chain.EmbeddedOptions{Alloc: alloc, BlockInterval: cfg.Chain.BlockInterval,
		DataDir: filepath.Join(cfg.DataDir, "chain")})
	if err != nil {
		return nil, err
	}
	be, err := embeddedContracts(ctx, e, cfg.DataDir, demo)
	if err != nil {
		e.Close()
		return nil, err
	}
	be.chain, be.close = e, func() { e.Close() }
	be.fund = func(ctx context.Context, a common.Address) error { return e.Fund(ctx, a, hundred) }
	return be, nil
}

func embeddedContracts(ctx context.Context, e *chain.Embedded, dataDir string, demo []common.Address) (*backend, error) {
	id, _ := e.ChainID(ctx)
	cb, dep := chain.DeployerBackend(e, id, e.Faucet())
	rec, ok, err := chain.LoadDeployment(dataDir)
	if err != nil {
		return nil, err
	}
	if ok {
		if code, err := e.CodeAt(ctx, rec.Contracts.Adjudicator, nil); err == nil && len(code) > 0 {
			c, _, err := chain.SetupAll(ctx, cb, config.ModeValidate, rec.Contracts, rec.Assets, dep, nil)
			if err != nil {
				return nil, err
			}
			return &backend{contracts: c, assets: rec.Assets}, nil
		}
		// The chain is not the one the data dir was written for (it predates
		// the chain's own persistence): deploy afresh, and the node refuses
		// the data dir, naming its channels.
	}
	// A test token for the demo users: 1000 PRN each.
	thousand := new(big.Int).Mul(big.NewInt(1000), chain.Ether)
	c, assets, err := e.DeployAll(ctx, demo, thousand, "PRN")
	if err != nil {
		return nil, err
	}
	return &backend{contracts: c, assets: assets}, nil
}

func serve(cfg *config.Config, demo []struct{ name, key string }) error {
	log := newLogger(cfg)
	perunlog.Install(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	kdf := keys.StandardKDF
	if cfg.Keystore.LightKDF {
		kdf = keys.LightKDF
	}
	ks, err := keys.New(cfg.KeystoreDir(), kdf)
	if err != nil {
		return err
	}
	var demoAddrs []common.Address
	for _, u := range demo {
		k, _ := crypto.HexToECDSA(u.key)
		a := crypto.PubkeyToAddress(k.PublicKey)
		demoAddrs = append(demoAddrs, a)
		if !ks.Has(a) {
			if _, err := ks.Import(k, u.name); err != nil {
				return err
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.Chain.TxTimeout)
	be, err := connect(cctx, cfg, ks, demoAddrs, log)
	cancel()
	if err != nil {
		return err
	}
	defer be.close()
	var demoInfo []node.DemoAccount
	for i, u := range demo {
		demoInfo = append(demoInfo, node.DemoAccount{Name: u.name, Address: demoAddrs[i].Hex(), Password: u.name})
	}
	wkey, err := watcherKey(ctx, cfg, ks, be, kdf, log)
	if err != nil {
		return err
	}
	// While the demo sessions come back, /healthz answers 503 "starting".
	m := metrics.New()
	// A cluster member waits here as the standby until it holds the lease.
	var lease *cluster.Lease
	if cfg.Cluster.Enabled {
		var stopWatch func()
		if lease, stopWatch, err = standBy(ctx, cfg, log); errors.Is(err, errStandbyStopped) {
			return nil
		} else if err != nil {
			return err
		}
		defer releaseLease(lease, log)
		defer stopWatch()
	}
	opts := node.Options{Config: cfg, Chain: be.chain, Contracts: be.contracts, Assets: be.assets, Fund: be.fund,
		Logger: log, Version: version, Demo: demoInfo, Starting: len(demo) > 0 || cfg.Sessions.PasswordDir != "", Watcher: wkey, Metrics: m}
	clusterOptions(&opts, lease)
	n, err := node.New(ctx, opts)
	if err != nil {
		return err
	}
	srv := rpc.NewServer(n, cfg.RPC, log, web.Handler())
	if err := srv.SetMetrics(m); err != nil {
		closeNode(n, log)
		return err
	}
	ln, err := net.Listen("tcp", cfg.RPC.Listen)
	if err != nil {
		closeNode(n, log)
		return fmt.Errorf("config key rpc.listen: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if len(demo) > 0 {
		if err := setupDemo(ctx, n, demo, demoAddrs); err != nil {
			sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer scancel()
			srv.Shutdown(sctx)
			closeNode(n, log)
			return err
		}
		n.SetReady()
	}
	restoreSessions(ctx, n, cfg, log)
	httpScheme, wsScheme := "http", "ws"
	if cfg.RPC.TLS.Enabled() {
		httpScheme, wsScheme = "https", "wss"
	}
	url := httpScheme + "://" + ln.Addr().String()
	wsURL := wsScheme + "://" + ln.Addr().String() + "/rpc"
	log.Info("perund listening", "url", url, "rpc", wsURL,
		"chain", cfg.Chain.URL, "adjudicator", be.contracts.Adjudicator.Hex(), "assetHolderETH", be.contracts.AssetHolderETH.Hex())
	if len(demo) > 0 {
		fmt.Printf("\nperund dev is running.\n  web wallet: %s/\n  JSON-RPC:   %s\n  data dir:   %s\n  demo accounts (password = name):\n", url, wsURL, cfg.DataDir)
		for i, u := range demo {
			fmt.Printf("    %-6s %s  password %q\n", u.name, demoAddrs[i].Hex(), u.name)
		}
		fmt.Println("  Press Ctrl-C to stop.")
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		closeNode(n, log)
		return fmt.Errorf("rpc server: %w", err)
	}
	log.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	srv.Shutdown(sctx)
	return n.Close(sctx)
}

// closeNode closes n within a bounded time, logging a failure.
func closeNode(n *node.Node, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		log.Warn("close node", "err", err)
	}
}

// setupDemo opens the demo users' sessions together (after a restart with
// a data dir, their shared channels sync with each other at once) and puts
// each in the other's contacts.
func setupDemo(ctx context.Context, n *node.Node, demo []struct{ name, key string }, addrs []common.Address) error {
	logins := make([]node.Login, len(demo))
	for i, u := range demo {
		logins[i] = node.Login{Account: addrs[i], Password: u.name}
	}
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sessions, err := n.OpenSessions(octx, logins)
	if err != nil {
		return fmt.Errorf("demo sessions: %w", err)
	}
	for i, s := range sessions {
		for j, o := range sessions {
			if i == j {
				continue
			}
			alias := demo[j].name
			if c, err := s.Contacts().ByAddress(addrs[j]); err == nil {
				if c.CommAddress == o.CommAddress() {
					continue
				}
				// From an earlier run on another free port: show the current one.
				if err := s.Contacts().Remove(c.Alias); err != nil {
					return fmt.Errorf("demo contacts: %w", err)
				}
				alias = c.Alias
			}
			if _, err := s.AddContact(contacts.Contact{Alias: alias, Address: addrs[j], CommAddress: o.CommAddress()}); err != nil {
				return fmt.Errorf("demo contacts: %w", err)
			}
		}
	}
	return nil
}

// devWatcherPassword protects the watchtower account perund sets up by
// itself on the embedded chain (a development chain: the key guards
// nothing of value).
const devWatcherPassword = "perund-dev-watcher"

// watcherKey unlocks the watchtower's operator account: watcher.account
// if set; on the embedded chain without it, an account of its own in
// dataDir/watcher, created and funded at the first start; otherwise none.
func watcherKey(ctx context.Context, cfg *config.Config, ks *keys.Store, be *backend, kdf keys.KDF, log *slog.Logger) (*ecdsa.PrivateKey, error) {
	w := cfg.Watcher
	if w.Account == "" {
		if cfg.Chain.URL != config.Embedded {
			return nil, nil
		}
		dks, err := keys.New(filepath.Join(cfg.DataDir, "watcher"), kdf)
		if err != nil {
			return nil, fmt.Errorf("watchtower keystore: %w", err)
		}
		list, err := dks.List()
		if err != nil {
			return nil, fmt.Errorf("watchtower keystore: %w", err)
		}
		if len(list) == 0 {
			a, err := dks.Create(devWatcherPassword)
			if err != nil {
				return nil, fmt.Errorf("create watchtower account: %w", err)
			}
			fctx, cancel := context.WithTimeout(ctx, cfg.Chain.TxTimeout)
			defer cancel()
			if err := be.fund(fctx, a); err != nil {
				return nil, fmt.Errorf("fund watchtower account: %w", err)
			}
			list = []common.Address{a}
		}
		return dks.Unlock(list[0], devWatcherPassword)
	}
	store := ks
	if w.Keystore != "" {
		var err error
		if store, err = keys.New(w.Keystore, kdf); err != nil {
			return nil, fmt.Errorf("config key watcher.keystore: %w", err)
		}
	}
	pw := w.Password
	if w.PasswordFile != "" {
		var err error
		if pw, err = readPasswordFile(w.PasswordFile); err != nil {
			return nil, fmt.Errorf("config key watcher.passwordFile: %w", err)
		}
	}
	addr := common.HexToAddress(w.Account)
	key, err := store.Unlock(addr, pw)
	if err != nil {
		return nil, fmt.Errorf("config key watcher.account: unlock %s: %w", addr.Hex(), err)
	}
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if bal, err := be.chain.BalanceAt(bctx, addr, nil); err == nil && bal.Sign() == 0 {
		log.Warn("the watchtower account has no ether for gas: refutations will fail until it is funded", "account", addr.Hex())
	}
	return key, nil
}

// configAssets are the configuration's ERC20 assets (a holder not given is
// zero).
func configAssets(cfg *config.Config) []chain.Asset {
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

// unlockDeployer unlocks contracts.deployer from the keystore with the
// password in contracts.deployerPasswordFile, or (ask, and no file given)
// the one asked on the terminal.
func unlockDeployer(cfg *config.Config, ks *keys.Store, ask bool) (*ecdsa.PrivateKey, error) {
	if cfg.Contracts.Deployer == "" || cfg.Contracts.DeployerPasswordFile == "" && !ask {
		return nil, errors.New("config key contracts.deployer: deploying needs contracts.deployer and contracts.deployerPasswordFile")
	}
	var pw string
	var err error
	if cfg.Contracts.DeployerPasswordFile != "" {
		pw, err = readPasswordFile(cfg.Contracts.DeployerPasswordFile)
	} else {
		pw, err = password("", false)
	}
	if err != nil {
		return nil, err
	}
	key, err := ks.Unlock(common.HexToAddress(cfg.Contracts.Deployer), pw)
	if err != nil {
		return nil, fmt.Errorf("unlock deployer %s: %w", cfg.Contracts.Deployer, err)
	}
	return key, nil
}

func readPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read password file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
