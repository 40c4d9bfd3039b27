// Package config loads perund's configuration: defaults < YAML file <
// PERUND_* environment < flags, validated with errors that name the key.
package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// EnvPrefix is the prefix of configuration environment variables. A key maps
// to PERUND_ + the key upper-cased with dots as underscores, e.g.
// rpc.allowedOrigins is PERUND_RPC_ALLOWEDORIGINS.
const EnvPrefix = "PERUND_"

// Contract modes.
const (
	ModeValidate         = "validate"
	ModeDeploy           = "deploy"
	ModeValidateOrDeploy = "validateOrDeploy"
)

// Embedded is the chain.url value that selects the in-process chain.
const Embedded = "embedded"

// MaxConfirmations bounds chain.confirmations: 64 blocks is two epochs of
// Ethereum's beacon chain, after which a block is final.
const MaxConfirmations = 64

// Config is the whole node configuration.
type Config struct {
	RPC       RPC       `koanf:"rpc"`
	DataDir   string    `koanf:"dataDir"`
	Store     Store     `koanf:"store"`
	Cluster   Cluster   `koanf:"cluster"`
	Sessions  Sessions  `koanf:"sessions"`
	Keystore  Keystore  `koanf:"keystore"`
	Chain     Chain     `koanf:"chain"`
	Contracts Contracts `koanf:"contracts"`
	Channel   Channel   `koanf:"channel"`
	Comm      Comm      `koanf:"comm"`
	Watcher   Watcher   `koanf:"watcher"`
	Log       Log       `koanf:"log"`
	// Assets are the ERC20 tokens channels can hold besides ETH.
	Assets []Asset `koanf:"assets"`
	// AllowAccountCreation enables account_new (set by perund dev).
	AllowAccountCreation bool `koanf:"allowAccountCreation"`
}

// RPC configures the JSON-RPC WebSocket server.
type RPC struct {
	Listen         string   `koanf:"listen"`
	AllowedOrigins []string `koanf:"allowedOrigins"`
	AuthToken      string   `koanf:"authToken"`
	MaxMessageSize int64    `koanf:"maxMessageSize"`
	MaxConnections int      `koanf:"maxConnections"`
	MaxPending     int      `koanf:"maxPending"`
	MaxBatch       int      `koanf:"maxBatch"`
	// HandshakeTimeout bounds reading a request's headers and the
	// WebSocket upgrade (slow-loris clients are dropped after it).
	HandshakeTimeout time.Duration `koanf:"handshakeTimeout"`
	// TLS serves https:// and wss:// when both files are set.
	TLS TLS `koanf:"tls"`
}

// TLS names a PEM certificate (chain) and its private key.
type TLS struct {
	Cert string `koanf:"cert"`
	Key  string `koanf:"key"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.Cert != "" }

// Store configures the node's channel database: by default a LevelDB in
// dataDir/channels.db, or a PostgreSQL database named by URL.
type Store struct {
	// URL selects the PostgreSQL backend:
	// postgres://user:password@host:port/database, with pgx's parameters
	// (sslmode, pool_max_conns, ...) as a query. Empty: LevelDB in the data
	// dir. perund creates and migrates the schema at start. Give the
	// password through the environment (PERUND_STORE_URL), PGPASSWORD or
	// ~/.pgpass rather than in a file.
	URL string `koanf:"url"`
	// Sync makes every write of a channel state wait for an fsync, so that
	// the states survive a power loss (not only a crash of perund), at the
	// cost of several milliseconds per payment. LevelDB only: on
	// PostgreSQL every write is a committed transaction, as durable as the
	// server makes it (synchronous_commit).
	Sync bool `koanf:"sync"`
}

// Cluster configures active/standby operation on a PostgreSQL store
// (package cluster).
type Cluster struct {
	// Enabled makes the node a member of an active/standby pair on
	// store.url: it serves only while it holds the database's lease, and
	// waits as a standby otherwise. It needs store.url.
	Enabled bool `koanf:"enabled"`
	// LeaseTimeout bounds a takeover: the lease row lasts three quarters
	// of it from a renewal (renewed every quarter of it), a standby looks
	// every twentieth of it, so a standby holds the lease at most four
	// fifths of it after the active process stopped renewing; an active
	// process that cannot renew stops signing after three fifths of it.
	LeaseTimeout time.Duration `koanf:"leaseTimeout"`
	// ID names this process in the lease; empty: host name and process id.
	ID string `koanf:"id"`
}

// Sessions configures how sessions come back after a restart or a
// failover.
type Sessions struct {
	// PasswordDir, if set, is a directory with a password file per account
	// (named by the lowercase 0x address): sessions of those accounts that
	// were open come back at start, with their id and token, so that
	// session_resume works after a restart or on the standby that took
	// over. Other users log in again.
	PasswordDir string `koanf:"passwordDir"`
}

// Keystore configures where keys live.
type Keystore struct {
	Dir string `koanf:"dir"`
	// LightKDF uses light scrypt parameters for new keys (dev and tests).
	LightKDF bool `koanf:"lightKdf"`
}

// Chain configures the Ethereum connection.
type Chain struct {
	URL       string        `koanf:"url"`
	ID        uint64        `koanf:"id"`
	TxTimeout time.Duration `koanf:"txTimeout"`
	// Confirmations is how many blocks deep a transaction or a deposit
	// event must be before perund counts it (1: included in the head
	// block). A public network wants more than 1 against reorganisations;
	// TxTimeout must then cover the blocks waited for.
	Confirmations uint64 `koanf:"confirmations"`
	// BlockInterval is the embedded chain's empty-block interval.
	BlockInterval time.Duration `koanf:"blockInterval"`
}

// Contracts configures the Perun contracts.
type Contracts struct {
	Mode           string `koanf:"mode"`
	Adjudicator    string `koanf:"adjudicator"`
	AssetHolderETH string `koanf:"assetHolderETH"`
	// Deployer is the keystore account paying for deployments on a real chain.
	Deployer string `koanf:"deployer"`
	// DeployerPasswordFile holds the deployer's keystore password.
	DeployerPasswordFile string `koanf:"deployerPasswordFile"`
}

// Asset is an ERC20 token: its symbol (as used in the API), token
// address, asset holder (deployed when empty and contracts.mode allows)
// and decimals.
type Asset struct {
	Symbol      string `koanf:"symbol"`
	Token       string `koanf:"token"`
	AssetHolder string `koanf:"assetHolder"`
	Decimals    uint8  `koanf:"decimals"`
}

// Channel configures channel defaults.
type Channel struct {
	// ChallengeDuration is in seconds of block time.
	ChallengeDuration uint64 `koanf:"challengeDuration"`
	// MinChallengeDuration is the shortest challenge duration (seconds)
	// a channel may have: the funding of a channel must complete within
	// one challenge duration of block time, which takes a few blocks.
	MinChallengeDuration uint64        `koanf:"minChallengeDuration"`
	ResponseTimeout      time.Duration `koanf:"responseTimeout"`
	AutoAcceptClose      bool          `koanf:"autoAcceptClose"`
}

// Comm configures the node's one peer port, which every user's session
// shares.
type Comm struct {
	// Listen is the host:port the peer port listens on (port 0 picks a
	// free one).
	Listen string `koanf:"listen"`
	// Host is the host advertised in each user's commAddress, which is
	// this host and the peer port's actual port.
	Host        string        `koanf:"host"`
	DialTimeout time.Duration `koanf:"dialTimeout"`
	// LegacyPeers are the peer addresses allowed go-perun's own, replayable
	// handshake (bare go-perun clients); empty by default.
	LegacyPeers []string `koanf:"legacyPeers"`
}

// Watcher configures the node's watchtower account: the keystore account
// that sends the registrations refuting a stale state of any user's
// channel, whether the user is logged in or not. It needs ether for gas
// and must be used for nothing else (a nonce taken elsewhere delays a
// refutation).
type Watcher struct {
	// Account is the account's address; empty: no operator account, a
	// stale state is then refuted only from the account of a party that is
	// logged in.
	Account string `koanf:"account"`
	// Keystore is the directory holding the account's key file; default
	// the node's keystore.
	Keystore string `koanf:"keystore"`
	// PasswordFile holds the account's password.
	PasswordFile string `koanf:"passwordFile"`
	// Password is the account's password; give it through the environment
	// (PERUND_WATCHER_PASSWORD), not in a file, or use PasswordFile.
	Password string `koanf:"password"`
}

// LegacyPeerAddresses returns LegacyPeers parsed (Validate checks them).
func (c Comm) LegacyPeerAddresses() []common.Address {
	out := make([]common.Address, 0, len(c.LegacyPeers))
	for _, a := range c.LegacyPeers {
		out = append(out, common.HexToAddress(a))
	}
	return out
}

// Log configures logging.
type Log struct {
	Level  string `koanf:"level"`
	Format string `koanf:"format"`
}

// Defaults returns the default configuration as a flat key map.
func Defaults() map[string]any {
	return map[string]any{
		"rpc.listen":                     "127.0.0.1:8400",
		"rpc.allowedOrigins":             []string{},
		"rpc.authToken":                  "",
		"rpc.maxMessageSize":             int64(1 << 20),
		"rpc.maxConnections":             1000,
		"rpc.maxPending":                 64,
		"rpc.maxBatch":                   100,
		"rpc.handshakeTimeout":           "10s",
		"rpc.tls.cert":                   "",
		"rpc.tls.key":                    "",
		"dataDir":                        "./perund-data",
		"store.url":                      "",
		"store.sync":                     false,
		"cluster.enabled":                false,
		"cluster.leaseTimeout":           "10s",
		"cluster.id":                     "",
		"sessions.passwordDir":           "",
		"keystore.dir":                   "",
		"keystore.lightKdf":              false,
		"chain.url":                      Embedded,
		"chain.id":                       uint64(1337),
		"chain.txTimeout":                "60s",
		"chain.confirmations":            uint64(1),
		"chain.blockInterval":            "1s",
		"contracts.mode":                 ModeValidateOrDeploy,
		"contracts.adjudicator":          "",
		"contracts.assetHolderETH":       "",
		"contracts.deployer":             "",
		"contracts.deployerPasswordFile": "",
		"channel.challengeDuration":      uint64(600),
		"channel.minChallengeDuration":   uint64(10),
		"channel.responseTimeout":        "30s",
		"channel.autoAcceptClose":        false,
		"comm.listen":                    "0.0.0.0:8401",
		"comm.host":                      "127.0.0.1",
		"comm.legacyPeers":               []string{},
		"comm.dialTimeout":               "5s",
		"watcher.account":                "",
		"watcher.keystore":               "",
		"watcher.passwordFile":           "",
		"watcher.password":               "",
		"log.level":                      "info",
		"log.format":                     "text",
		"allowAccountCreation":           false,
		"assets":                         []any{},
	}
}

// KeyError is a configuration error about one key.
type KeyError struct {
	Key    string
	Reason string
}

func (e *KeyError) Error() string { return fmt.Sprintf("config key %s: %s", e.Key, e.Reason) }

// Sources are the inputs of Load, each optional.
type Sources struct {
	// File is a YAML file path.
	File string
	// Files are more YAML files, each over the one before it (and over
	// File): e.g. a node's configuration, then the contracts snippet that
	// perund contracts deploy printed.
	Files []string
	// Env is the environment as KEY=VALUE strings (os.Environ()).
	Env []string
	// Flags are key/value overrides from the command line.
	Flags map[string]any
	// Base overrides the defaults (used by perund dev) and sits below the file.
	Base map[string]any
}

// Load merges the sources over the defaults, validates and returns the
// configuration.
func Load(src Sources) (*Config, error) {
	k := koanf.New(".")
	defaults := Defaults()
	if err := k.Load(confmap.Provider(defaults, "."), nil); err != nil {
		return nil, fmt.Errorf("load defaults: %w", err)
	}
	known := make(map[string]bool, len(defaults))
	envKey := make(map[string]string, len(defaults))
	for key := range defaults {
		known[key] = true
		envKey[EnvPrefix+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))] = key
	}
	layers := []struct {
		name string
		m    map[string]any
	}{{"base", src.Base}}
	for _, f := range append([]string{src.File}, src.Files...) {
		if f == "" {
			continue
		}
		fk := koanf.New(".")
		if err := fk.Load(file.Provider(f), yaml.Parser()); err != nil {
			return nil, fmt.Errorf("read config file %s: %w", f, err)
		}
		layers = append(layers, struct {
			name string
			m    map[string]any
		}{"file " + f, fk.All()})
	}
	env := map[string]any{}
	for _, kv := range src.Env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		key, ok := envKey[name]
		if !ok {
			return nil, &KeyError{Key: name, Reason: "unknown environment variable"}
		}
		env[key] = val
	}
	layers = append(layers, struct {
		name string
		m    map[string]any
	}{"environment", env}, struct {
		name string
		m    map[string]any
	}{"flags", src.Flags})
	for _, l := range layers {
		if len(l.m) == 0 {
			continue
		}
		flat := flatten(l.m)
		for key := range flat {
			if !known[key] {
				return nil, &KeyError{Key: key, Reason: "unknown key (in " + l.name + ")"}
			}
		}
		if err := k.Load(confmap.Provider(flat, "."), nil); err != nil {
			return nil, fmt.Errorf("load %s: %w", l.name, err)
		}
	}
	var cfg Config
	for key := range defaults {
		if err := decodeKey(k, key, &cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// secretKey reports whether key's value is a secret that an error must
// not show.
func secretKey(key string) bool {
	switch key {
	case "rpc.authToken", "store.url", "watcher.password":
		return true
	}
	return false
}

// decodeKey decodes one key so a bad value is reported with its key.
func decodeKey(k *koanf.Koanf, key string, cfg *Config) error {
	sub := koanf.New(".")
	_ = sub.Set(key, k.Get(key))
	dc := &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
		WeaklyTypedInput: true,
		Result:           cfg,
		TagName:          "koanf",
	}
	if err := sub.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{DecoderConfig: dc}); err != nil {
		if secretKey(key) {
			return &KeyError{Key: key, Reason: "bad value (not shown: it holds a secret)"}
		}
		return &KeyError{Key: key, Reason: fmt.Sprintf("bad value %v: %v", k.Get(key), err)}
	}
	return nil
}

// flatten turns nested maps into dotted keys.
func flatten(m map[string]any) map[string]any {
	out := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			for k, vv := range sub {
				walk(join(prefix, k), vv)
			}
			return
		}
		out[prefix] = v
	}
	for k, v := range m {
		walk(k, v)
	}
	return out
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// Validate checks value ranges and formats; the error names the key.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.RPC.Listen); err != nil {
		return &KeyError{"rpc.listen", fmt.Sprintf("%q is not host:port", c.RPC.Listen)}
	}
	for _, o := range c.RPC.AllowedOrigins {
		if o == "*" {
			continue
		}
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" {
			return &KeyError{"rpc.allowedOrigins", fmt.Sprintf("%q is not an origin like https://host:port or *", o)}
		}
	}
	if c.RPC.MaxMessageSize < 1024 {
		return &KeyError{"rpc.maxMessageSize", "must be at least 1024 bytes"}
	}
	if c.RPC.MaxConnections < 1 {
		return &KeyError{"rpc.maxConnections", "must be at least 1"}
	}
	if c.RPC.MaxPending < 1 {
		return &KeyError{"rpc.maxPending", "must be at least 1"}
	}
	if c.RPC.MaxBatch < 1 {
		return &KeyError{"rpc.maxBatch", "must be at least 1"}
	}
	if c.RPC.HandshakeTimeout < 100*time.Millisecond {
		return &KeyError{"rpc.handshakeTimeout", "must be at least 100ms (write durations like 10s)"}
	}
	if (c.RPC.TLS.Cert == "") != (c.RPC.TLS.Key == "") {
		return &KeyError{"rpc.tls.cert", "rpc.tls.cert and rpc.tls.key are set together"}
	}
	for key, path := range map[string]string{"rpc.tls.cert": c.RPC.TLS.Cert, "rpc.tls.key": c.RPC.TLS.Key} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			return &KeyError{key, fmt.Sprintf("cannot read %s: %v", path, err)}
		}
	}
	if c.RPC.TLS.Enabled() {
		// Loaded here, not first when the API starts serving: a node
		// must not come up (restore sessions, say it listens) with an API
		// that cannot serve.
		if _, err := tls.LoadX509KeyPair(c.RPC.TLS.Cert, c.RPC.TLS.Key); err != nil {
			return &KeyError{"rpc.tls", fmt.Sprintf("certificate %s and key %s do not load as a pair: %v", c.RPC.TLS.Cert, c.RPC.TLS.Key, err)}
		}
	}
	if c.DataDir == "" {
		return &KeyError{"dataDir", "must not be empty"}
	}
	if c.Store.URL != "" {
		if err := validStoreURL(c.Store.URL); err != nil {
			return err
		}
	}
	if c.Cluster.Enabled && c.Store.URL == "" {
		return &KeyError{"cluster.enabled", "needs store.url: the nodes of a cluster share a PostgreSQL database"}
	}
	if c.Cluster.LeaseTimeout < time.Second {
		return &KeyError{"cluster.leaseTimeout", "must be at least 1s (write durations like 10s)"}
	}
	if c.Chain.URL != Embedded {
		u, err := url.Parse(c.Chain.URL)
		switch {
		case err != nil || u.Host == "":
			return &KeyError{"chain.url", fmt.Sprintf("%q is not %q or a ws:// or wss:// URL", c.Chain.URL, Embedded)}
		case u.Scheme == "http" || u.Scheme == "https":
			return &KeyError{"chain.url", fmt.Sprintf("%q: HTTP is not supported (perun needs subscriptions): use ws:// or wss://", c.Chain.URL)}
		case u.Scheme != "ws" && u.Scheme != "wss":
			return &KeyError{"chain.url", fmt.Sprintf("%q: scheme must be ws or wss", c.Chain.URL)}
		}
	}
	if c.Chain.ID == 0 {
		return &KeyError{"chain.id", "must not be 0"}
	}
	if c.Chain.TxTimeout < time.Second {
		return &KeyError{"chain.txTimeout", "must be at least 1s (write durations like 60s)"}
	}
	if c.Chain.Confirmations < 1 || c.Chain.Confirmations > MaxConfirmations {
		return &KeyError{"chain.confirmations", fmt.Sprintf("must be between 1 and %d (blocks)", MaxConfirmations)}
	}
	if c.Chain.BlockInterval < 10*time.Millisecond {
		return &KeyError{"chain.blockInterval", "must be at least 10ms"}
	}
	switch c.Contracts.Mode {
	case ModeValidate, ModeDeploy, ModeValidateOrDeploy:
	default:
		return &KeyError{"contracts.mode", fmt.Sprintf("%q is not one of validate, deploy, validateOrDeploy", c.Contracts.Mode)}
	}
	for key, v := range map[string]string{
		"contracts.adjudicator":    c.Contracts.Adjudicator,
		"contracts.assetHolderETH": c.Contracts.AssetHolderETH,
		"contracts.deployer":       c.Contracts.Deployer,
	} {
		if v != "" && !common.IsHexAddress(v) {
			return &KeyError{key, fmt.Sprintf("%q is not a hex address", v)}
		}
	}
	if c.Contracts.Mode == ModeValidate && (c.Contracts.Adjudicator == "" || c.Contracts.AssetHolderETH == "") {
		return &KeyError{"contracts.adjudicator", "validate mode needs contracts.adjudicator and contracts.assetHolderETH"}
	}
	seen := map[string]bool{"ETH": true}
	for i, a := range c.Assets {
		key := fmt.Sprintf("assets[%d]", i)
		if !validSymbol(a.Symbol) {
			return &KeyError{key + ".symbol", fmt.Sprintf("%q is not 1 to 11 letters or digits", a.Symbol)}
		}
		if seen[a.Symbol] {
			return &KeyError{key + ".symbol", fmt.Sprintf("%q is used twice (ETH is built in)", a.Symbol)}
		}
		seen[a.Symbol] = true
		if !common.IsHexAddress(a.Token) {
			return &KeyError{key + ".token", fmt.Sprintf("%q is not a hex address", a.Token)}
		}
		if a.AssetHolder != "" && !common.IsHexAddress(a.AssetHolder) {
			return &KeyError{key + ".assetHolder", fmt.Sprintf("%q is not a hex address", a.AssetHolder)}
		}
		if a.AssetHolder == "" && c.Contracts.Mode == ModeValidate {
			return &KeyError{key + ".assetHolder", "validate mode needs the asset holder address"}
		}
		if a.Decimals > 36 {
			return &KeyError{key + ".decimals", "must be at most 36"}
		}
	}
	if c.Channel.MinChallengeDuration == 0 {
		return &KeyError{"channel.minChallengeDuration", "must be at least 1 (seconds)"}
	}
	if c.Channel.ChallengeDuration < c.Channel.MinChallengeDuration {
		return &KeyError{"channel.challengeDuration", fmt.Sprintf("must be at least channel.minChallengeDuration (%d seconds)", c.Channel.MinChallengeDuration)}
	}
	if c.Channel.ResponseTimeout < time.Second {
		return &KeyError{"channel.responseTimeout", "must be at least 1s (write durations like 30s)"}
	}
	if _, _, err := net.SplitHostPort(c.Comm.Listen); err != nil {
		return &KeyError{"comm.listen", fmt.Sprintf("%q is not host:port", c.Comm.Listen)}
	}
	if !validHost(c.Comm.Host) {
		return &KeyError{"comm.host", fmt.Sprintf("%q is not an IP address or host name", c.Comm.Host)}
	}
	for _, a := range c.Comm.LegacyPeers {
		if !common.IsHexAddress(a) {
			return &KeyError{"comm.legacyPeers", fmt.Sprintf("%q is not a hex address", a)}
		}
	}
	if c.Comm.DialTimeout < 100*time.Millisecond {
		return &KeyError{"comm.dialTimeout", "must be at least 100ms"}
	}
	if c.Watcher.Account != "" {
		if !common.IsHexAddress(c.Watcher.Account) {
			return &KeyError{"watcher.account", fmt.Sprintf("%q is not a hex address", c.Watcher.Account)}
		}
		if c.Watcher.PasswordFile == "" && c.Watcher.Password == "" {
			return &KeyError{"watcher.account", "needs watcher.passwordFile or PERUND_WATCHER_PASSWORD"}
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return &KeyError{"log.level", fmt.Sprintf("%q is not one of debug, info, warn, error", c.Log.Level)}
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return &KeyError{"log.format", fmt.Sprintf("%q is not text or json", c.Log.Format)}
	}
	return nil
}

// validStoreURL checks a PostgreSQL URL; its errors show no part of it
// that could hold the password.
func validStoreURL(raw string) error {
	const like = "a URL like postgres://user:password@host:port/database"
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return &KeyError{"store.url", "is not " + like}
	case u.Scheme != "postgres" && u.Scheme != "postgresql":
		return &KeyError{"store.url", fmt.Sprintf("scheme %q: must be postgres (%s)", u.Scheme, like)}
	case u.Host == "":
		return &KeyError{"store.url", "has no host (" + like + ")"}
	case strings.Trim(u.Path, "/") == "":
		return &KeyError{"store.url", fmt.Sprintf("names no database on %s (%s)", u.Host, like)}
	}
	return nil
}

// validHost accepts an IP address or a DNS host name.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func validSymbol(s string) bool {
	if len(s) == 0 || len(s) > 11 {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// KeystoreDir returns the keystore directory (dataDir/keystore by default).
func (c *Config) KeystoreDir() string {
	if c.Keystore.Dir != "" {
		return c.Keystore.Dir
	}
	return filepath.Join(c.DataDir, "keystore")
}

// Keys lists every configuration key, sorted (for documentation and help).
func Keys() []string {
	var out []string
	for k := range Defaults() {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
