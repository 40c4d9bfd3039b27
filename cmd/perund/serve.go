package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
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
	"github.com/perund/perund/daemon"
	"github.com/perund/perund/keys"
	"github.com/perund/perund/metrics"
	"github.com/perund/perund/node"
	"github.com/perund/perund/perunlog"
	"github.com/perund/perund/rpc"
	"github.com/perund/perund/web"
)

// Demo users of perund dev: anvil's test keys #1 and #2.
var demoUsers = []struct{ name, key string }{
	{"alice", daemon.DemoKeyAlice},
	{"bob", daemon.DemoKeyBob},
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
	accounts := make([]daemon.Account, len(demo))
	for i, u := range demo {
		k, err := crypto.HexToECDSA(u.key)
		if err != nil {
			return fmt.Errorf("demo key %s: %w", u.name, err)
		}
		accounts[i] = daemon.Account{Key: k, Password: u.name}
	}
	demoAddrs, err := daemon.ImportKeys(ks, accounts)
	if err != nil {
		return err
	}
	// On the embedded chain the demo users get 100 ETH and 1000 PRN.
	embedded := daemon.EmbeddedOptions{Alloc: map[common.Address]*big.Int{}, TokenHolders: demoAddrs,
		TokenAmount: new(big.Int).Mul(big.NewInt(1000), chain.Ether)}
	for _, a := range demoAddrs {
		embedded.Alloc[a] = new(big.Int).Mul(big.NewInt(100), chain.Ether)
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.Chain.TxTimeout)
	be, err := daemon.Connect(cctx, cfg, embedded, func() (*ecdsa.PrivateKey, error) { return unlockDeployer(cfg, ks, false) }, log)
	cancel()
	if err != nil {
		return err
	}
	defer be.Close()
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
	opts := be.NodeOptions(cfg, log)
	opts.Version, opts.Demo, opts.Watcher, opts.Metrics = version, demoInfo, wkey, m
	opts.Starting = len(demo) > 0 || cfg.Sessions.PasswordDir != ""
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
	api, err := daemon.ServeAPI(srv, cfg.RPC)
	if err != nil {
		closeNode(n, log)
		return err
	}
	// shutdown stops the API within 30 s, then the node within 30 s of
	// its own (an API that used up its time leaves the node's sessions
	// and settles theirs).
	shutdown := func() error {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		if err := api.Shutdown(sctx); err != nil {
			log.Warn("shut down the API", "err", err)
		}
		nctx, ncancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ncancel()
		return n.Close(nctx)
	}
	if len(demo) > 0 {
		if err := setupDemo(ctx, n, demo, demoAddrs); err != nil {
			if serr := shutdown(); serr != nil {
				log.Warn("close node", "err", serr)
			}
			return err
		}
		n.SetReady()
	}
	restoreSessions(ctx, n, cfg, log)
	log.Info("perund listening", "url", api.URL(), "rpc", api.RPCURL(),
		"chain", chain.RedactURL(cfg.Chain.URL), "adjudicator", be.Contracts.Adjudicator.Hex(), "assetHolderETH", be.Contracts.AssetHolderETH.Hex())
	if len(demo) > 0 {
		fmt.Printf("\nperund dev is running.\n  web wallet: %s/\n  JSON-RPC:   %s\n  data dir:   %s\n  demo accounts (password = name):\n", api.URL(), api.RPCURL(), cfg.DataDir)
		for i, u := range demo {
			fmt.Printf("    %-6s %s  password %q\n", u.name, demoAddrs[i].Hex(), u.name)
		}
		fmt.Println("  Press Ctrl-C to stop.")
	}
	select {
	case <-ctx.Done():
	case <-api.Done():
		closeNode(n, log)
		return api.Err()
	}
	log.Info("shutting down")
	return shutdown()
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
	users := make([]daemon.User, len(sessions))
	for i, s := range sessions {
		users[i] = daemon.User{Session: s, Alias: demo[i].name}
	}
	if err := daemon.Introduce(users...); err != nil {
		return fmt.Errorf("demo contacts: %w", err)
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
func watcherKey(ctx context.Context, cfg *config.Config, ks *keys.Store, be *daemon.Chain, kdf keys.KDF, log *slog.Logger) (*ecdsa.PrivateKey, error) {
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
			if err := be.Fund(fctx, a); err != nil {
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
	if bal, err := be.Backend.BalanceAt(bctx, addr, nil); err == nil && bal.Sign() == 0 {
		log.Warn("the watchtower account has no ether for gas: refutations will fail until it is funded", "account", addr.Hex())
	}
	return key, nil
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
