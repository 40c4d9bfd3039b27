package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "perund.yaml")
	require.NoError(t, os.WriteFile(f, []byte(`
rpc:
  listen: 127.0.0.1:9000
  allowedOrigins: [https://wallet.example]
channel:
  responseTimeout: 10s
  challengeDuration: 100
log:
  level: debug
assets:
  - symbol: PRN
    token: "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    decimals: 18
`), 0o600))
	cfg, err := Load(Sources{
		File:  f,
		Env:   []string{"PERUND_CHANNEL_RESPONSETIMEOUT=20s", "HOME=/root", "PERUND_LOG_LEVEL=warn"},
		Flags: map[string]any{"log.level": "error"},
	})
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9000", cfg.RPC.Listen, "file over default")
	require.Equal(t, []string{"https://wallet.example"}, cfg.RPC.AllowedOrigins)
	require.Equal(t, 20*time.Second, cfg.Channel.ResponseTimeout, "environment over file")
	require.Equal(t, "error", cfg.Log.Level, "flags over environment")
	require.Equal(t, uint64(100), cfg.Channel.ChallengeDuration)
	require.Equal(t, []Asset{{Symbol: "PRN", Token: "0x5FbDB2315678afecb367f032d93F642f64180aa3", Decimals: 18}}, cfg.Assets)
	require.Equal(t, Embedded, cfg.Chain.URL, "default")
	require.Equal(t, filepath.Join("./perund-data", "keystore"), cfg.KeystoreDir())
}

func TestErrorsNameTheKey(t *testing.T) {
	junk := filepath.Join(t.TempDir(), "junk.pem")
	require.NoError(t, os.WriteFile(junk, []byte("not a certificate"), 0o600))
	tests := []struct {
		name string
		src  Sources
		key  string
	}{
		{"unknown file key", Sources{Base: map[string]any{"rpc": map[string]any{"lisen": "x"}}}, "rpc.lisen"},
		{"unknown env var", Sources{Env: []string{"PERUND_NOPE=1"}}, "PERUND_NOPE"},
		{"http chain url", Sources{Flags: map[string]any{"chain.url": "http://127.0.0.1:8545"}}, "chain.url"},
		{"bad chain url", Sources{Flags: map[string]any{"chain.url": "nonsense"}}, "chain.url"},
		{"bad duration", Sources{Env: []string{"PERUND_CHANNEL_RESPONSETIMEOUT=soon"}}, "channel.responseTimeout"},
		{"duration without unit", Sources{Flags: map[string]any{"channel.responseTimeout": 30}}, "channel.responseTimeout"},
		{"bad number", Sources{Env: []string{"PERUND_CHAIN_ID=abc"}}, "chain.id"},
		{"bad mode", Sources{Flags: map[string]any{"contracts.mode": "maybe"}}, "contracts.mode"},
		{"validate needs addresses", Sources{Flags: map[string]any{"contracts.mode": "validate"}}, "contracts.adjudicator"},
		{"bad address", Sources{Flags: map[string]any{"contracts.adjudicator": "0x12"}}, "contracts.adjudicator"},
		{"bad origin", Sources{Flags: map[string]any{"rpc.allowedOrigins": "wallet"}}, "rpc.allowedOrigins"},
		{"bad level", Sources{Flags: map[string]any{"log.level": "loud"}}, "log.level"},
		{"bad listen", Sources{Flags: map[string]any{"rpc.listen": "8400"}}, "rpc.listen"},
		{"bad comm listen", Sources{Flags: map[string]any{"comm.listen": "8401"}}, "comm.listen"},
		{"bad comm host", Sources{Flags: map[string]any{"comm.host": "a b"}}, "comm.host"},
		{"bad legacy peer", Sources{Env: []string{"PERUND_COMM_LEGACYPEERS=0x12"}}, "comm.legacyPeers"},
		{"asset symbol", Sources{Base: map[string]any{"assets": []any{map[string]any{"symbol": "P R", "token": "0x5FbDB2315678afecb367f032d93F642f64180aa3"}}}}, "assets[0].symbol"},
		{"asset token", Sources{Base: map[string]any{"assets": []any{map[string]any{"symbol": "PRN", "token": "0x1"}}}}, "assets[0].token"},
		{"asset ETH", Sources{Base: map[string]any{"assets": []any{map[string]any{"symbol": "ETH", "token": "0x5FbDB2315678afecb367f032d93F642f64180aa3"}}}}, "assets[0].symbol"},
		{"no confirmations", Sources{Flags: map[string]any{"chain.confirmations": 0}}, "chain.confirmations"},
		{"too many confirmations", Sources{Env: []string{"PERUND_CHAIN_CONFIRMATIONS=65"}}, "chain.confirmations"},
		{"zero challenge", Sources{Flags: map[string]any{"channel.challengeDuration": 0}}, "channel.challengeDuration"},
		{"store url scheme", Sources{Flags: map[string]any{"store.url": "mysql://u:s3cret@db/perund"}}, "store.url"},
		{"store url host", Sources{Flags: map[string]any{"store.url": "postgres:///perund"}}, "store.url"},
		{"store url database", Sources{Flags: map[string]any{"store.url": "postgres://u:s3cret@db:5432/"}}, "store.url"},
		{"store url unparsable", Sources{Env: []string{"PERUND_STORE_URL=postgres://u:s3cret@db:port/x"}}, "store.url"},
		{"tls cert without key", Sources{Flags: map[string]any{"rpc.tls.cert": junk}}, "rpc.tls.cert"},
		{"tls files missing", Sources{Flags: map[string]any{"rpc.tls.cert": junk + ".gone", "rpc.tls.key": junk}}, "rpc.tls.cert"},
		{"tls files not a key pair", Sources{Flags: map[string]any{"rpc.tls.cert": junk, "rpc.tls.key": junk}}, "rpc.tls"},
		{"store url not a string", Sources{Base: map[string]any{"store": map[string]any{"url": []any{"s3cret"}}}}, "store.url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.src)
			var ke *KeyError
			require.ErrorAs(t, err, &ke)
			require.Equal(t, tc.key, ke.Key, err.Error())
			require.Contains(t, err.Error(), tc.key)
			require.NotContains(t, err.Error(), "s3cret", "a password is never shown")
		})
	}
}

func TestCommDefaults(t *testing.T) {
	cfg, err := Load(Sources{})
	require.NoError(t, err)
	require.Equal(t, "0.0.0.0:8401", cfg.Comm.Listen)
	require.Empty(t, cfg.Comm.LegacyPeers)
	cfg, err = Load(Sources{Env: []string{"PERUND_COMM_LEGACYPEERS=0x5FbDB2315678afecb367f032d93F642f64180aa3", "PERUND_COMM_HOST=peer.example.org"}})
	require.NoError(t, err)
	require.Equal(t, "peer.example.org", cfg.Comm.Host)
	require.Len(t, cfg.Comm.LegacyPeerAddresses(), 1)
	require.Equal(t, "0x5FbDB2315678afecb367f032d93F642f64180aa3", cfg.Comm.LegacyPeerAddresses()[0].Hex())
}

// store.url selects PostgreSQL; empty (the default) is LevelDB.
func TestStoreURL(t *testing.T) {
	cfg, err := Load(Sources{})
	require.NoError(t, err)
	require.Empty(t, cfg.Store.URL)
	const u = "postgres://perund:s3cret@db.example:5432/perund?sslmode=verify-full"
	cfg, err = Load(Sources{Env: []string{"PERUND_STORE_URL=" + u}})
	require.NoError(t, err)
	require.Equal(t, u, cfg.Store.URL)
	_, err = Load(Sources{Flags: map[string]any{"store.url": "postgresql://db/perund"}})
	require.NoError(t, err)
	_, err = Load(Sources{Flags: map[string]any{"store.url": "mysql://u:s3cret@db/perund"}})
	require.ErrorContains(t, err, `config key store.url: scheme "mysql": must be postgres`)
	_, err = Load(Sources{Flags: map[string]any{"store.url": "host=db password=s3cret"}})
	require.ErrorContains(t, err, "store.url")
	require.NotContains(t, err.Error(), "s3cret")
}

func TestWebSocketURLAccepted(t *testing.T) {
	cfg, err := Load(Sources{Flags: map[string]any{"chain.url": "ws://127.0.0.1:8545", "rpc.allowedOrigins": "http://a:1,*"}})
	require.NoError(t, err)
	require.Equal(t, "ws://127.0.0.1:8545", cfg.Chain.URL)
	require.Equal(t, []string{"http://a:1", "*"}, cfg.RPC.AllowedOrigins)
}

// Several files: each over the one before (a node's configuration, then
// the snippet of perund contracts deploy); an unknown key names its file.
func TestSeveralFiles(t *testing.T) {
	dir := t.TempDir()
	node, contracts, bad := filepath.Join(dir, "perund.yaml"), filepath.Join(dir, "contracts.yaml"), filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(node, []byte("chain:\n  url: ws://127.0.0.1:8545\n  id: 5\n  confirmations: 4\ncontracts:\n  mode: deploy\nassets:\n  - symbol: PRN\n    token: \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n"), 0o600))
	require.NoError(t, os.WriteFile(contracts, []byte(`chain:
  id: 11155111
contracts:
  mode: validate
  adjudicator: 0x5FbDB2315678afecb367f032d93F642f64180aa3
  assetHolderETH: 0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512
assets:
  - symbol: PRN
    token: 0x5FbDB2315678afecb367f032d93F642f64180aa3
    assetHolder: 0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0
    decimals: 18
`), 0o600))
	require.NoError(t, os.WriteFile(bad, []byte("contracts:\n  adjudicatr: 0x5FbDB2315678afecb367f032d93F642f64180aa3\n"), 0o600))
	cfg, err := Load(Sources{Files: []string{node, contracts}})
	require.NoError(t, err)
	require.Equal(t, "ws://127.0.0.1:8545", cfg.Chain.URL, "from the first file")
	require.Equal(t, uint64(4), cfg.Chain.Confirmations, "from the first file")
	require.Equal(t, uint64(11155111), cfg.Chain.ID, "the second file over the first")
	require.Equal(t, ModeValidate, cfg.Contracts.Mode)
	require.Equal(t, []Asset{{Symbol: "PRN", Token: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
		AssetHolder: "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0", Decimals: 18}}, cfg.Assets, "a list is replaced, not merged")
	_, err = Load(Sources{Files: []string{node, bad}})
	var ke *KeyError
	require.ErrorAs(t, err, &ke)
	require.Equal(t, "contracts.adjudicatr", ke.Key)
	require.Contains(t, err.Error(), "bad.yaml")
}
