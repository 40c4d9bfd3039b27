package daemon_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/gorilla/websocket"
	"github.com/perun-network/perun-eth-backend/bindings/peruntoken"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/config"
	"github.com/perund/perund/contacts"
	"github.com/perund/perund/daemon"
	"github.com/perund/perund/internal/leaktest"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/keys"
	"github.com/perund/perund/node"
	"github.com/perund/perund/perunlog"
	"github.com/perund/perund/rpc"
	"github.com/perund/perund/rpc/rpctest"
)

func TestMain(m *testing.M) {
	perunlog.Install(discard())
	leaktest.VerifyTestMain(m)
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestEmbeddedComesBack: the embedded chain of a data dir keeps its state
// and contracts across a restart, found again through the deployment
// record the node writes; Fund pays the given amount.
func TestEmbeddedComesBack(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	holder := common.HexToAddress("0x00000000000000000000000000000000000000a1")
	cfg, err := perundtest.Configure(perundtest.NodeOptions{Dir: t.TempDir()})
	require.NoError(t, err)
	o := daemon.EmbeddedOptions{TokenHolders: []common.Address{holder}, TokenAmount: big.NewInt(5), FundAmount: big.NewInt(7)}

	start := func() (*daemon.Chain, *node.Node) {
		c, err := daemon.Connect(ctx, cfg, o, nil, discard())
		require.NoError(t, err)
		require.NotNil(t, c.Embedded, "chain.url embedded starts the embedded chain")
		n, err := node.New(ctx, c.NodeOptions(cfg, discard()))
		require.NoError(t, err)
		return c, n
	}
	stop := func(c *daemon.Chain, n *node.Node) {
		require.NoError(t, n.Close(ctx))
		c.Close()
	}
	tokenBalance := func(c *daemon.Chain) *big.Int {
		require.Len(t, c.Assets, 1)
		tok, err := peruntoken.NewPeruntoken(c.Assets[0].Token, c.Embedded)
		require.NoError(t, err)
		b, err := tok.BalanceOf(&bind.CallOpts{Context: ctx}, holder)
		require.NoError(t, err)
		return b
	}

	c1, n1 := start()
	require.Equal(t, "PRN", c1.Assets[0].Symbol)
	require.Equal(t, big.NewInt(5), tokenBalance(c1))
	funded := common.HexToAddress("0x00000000000000000000000000000000000000b2")
	require.NoError(t, c1.Fund(ctx, funded))
	first, assets := c1.Contracts, c1.Assets
	stop(c1, n1)

	c2, n2 := start()
	defer stop(c2, n2)
	require.Equal(t, first, c2.Contracts, "the same contracts, not deployed again")
	require.Equal(t, assets, c2.Assets)
	require.Equal(t, big.NewInt(5), tokenBalance(c2), "the chain's state came back")
	bal, err := c2.Embedded.BalanceAt(ctx, funded, nil)
	require.NoError(t, err)
	require.Equal(t, big.NewInt(7), bal, "Fund paid FundAmount, and it stayed")
}

// TestServeAPI: the API answers on its listener at the URLs it names
// (plain and TLS), a taken port is refused naming rpc.listen, and
// Shutdown returns once it has stopped serving.
func TestServeAPI(t *testing.T) {
	ch := perundtest.NewChain(t, perundtest.ChainOptions{})
	n := ch.Node(t, perundtest.NodeOptions{})
	cert := perundtest.SelfSigned(t)
	certFile, keyFile := cert.Files(t)
	cases := []struct {
		name   string
		tls    config.TLS
		scheme string
		dialer *websocket.Dialer
		client *http.Client
	}{
		{"plain", config.TLS{}, "ws", websocket.DefaultDialer, http.DefaultClient},
		{"tls", config.TLS{Cert: certFile, Key: keyFile}, "wss",
			&websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: cert.Pool}},
			&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.Pool}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := n.Config().RPC
			cfg.Listen, cfg.TLS = "127.0.0.1:0", tc.tls
			api, err := daemon.ServeAPI(rpc.NewServer(n, cfg, discard(), nil), cfg)
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(api.RPCURL(), tc.scheme+"://127.0.0.1:"), api.RPCURL())

			var info map[string]any
			rpctest.DialWith(t, tc.dialer, api.RPCURL()).OK("node_info", nil, &info)
			require.NotEmpty(t, info["chainId"])
			resp, err := tc.client.Get(api.URL() + "/healthz")
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)

			// The port is taken: a second API there is refused by name.
			taken := cfg
			taken.Listen = api.Addr().String()
			_, err = daemon.ServeAPI(rpc.NewServer(n, taken, discard(), nil), taken)
			require.ErrorContains(t, err, "rpc.listen")

			require.NoError(t, api.Shutdown(ctxFor(t, 30*time.Second)))
			select {
			case <-api.Done():
			default:
				t.Fatal("Shutdown returned before the server stopped serving")
			}
			require.NoError(t, api.Err())
			_, err = net.DialTimeout("tcp", api.Addr().String(), time.Second)
			require.Error(t, err, "nothing listens after Shutdown")
		})
	}
}

// TestIntroduce: users end up in each other's contacts with their current
// peer addresses; a contact left from a run at another peer address is
// replaced under the alias it had; introducing again changes nothing.
func TestIntroduce(t *testing.T) {
	ch := perundtest.NewChain(t, perundtest.ChainOptions{})
	n := ch.Node(t, perundtest.NodeOptions{Keys: map[string]string{perundtest.KeyAlice: "a", perundtest.KeyBob: "b"}})
	ka, _ := crypto.HexToECDSA(perundtest.KeyAlice)
	kb, _ := crypto.HexToECDSA(perundtest.KeyBob)
	alice := perundtest.Login(t, n, crypto.PubkeyToAddress(ka.PublicKey), "a")
	bob := perundtest.Login(t, n, crypto.PubkeyToAddress(kb.PublicKey), "b")
	_, err := alice.AddContact(contacts.Contact{Alias: "bobby", Address: bob.Address(), CommAddress: "127.0.0.1:1"})
	require.NoError(t, err)

	for range 2 {
		require.NoError(t, daemon.Introduce(daemon.User{Session: alice, Alias: "alice"}, daemon.User{Session: bob, Alias: "bob"}))
		require.Equal(t, []contacts.Contact{{Alias: "bobby", Address: bob.Address(), CommAddress: bob.CommAddress()}},
			alice.Contacts().List(), "the old contact, at bob's current address")
		require.Equal(t, []contacts.Contact{{Alias: "alice", Address: alice.Address(), CommAddress: alice.CommAddress()}},
			bob.Contacts().List())
	}
}

// TestImportKeys: a key is stored once; importing it again (a data dir
// used before) is no error and keeps the first password.
func TestImportKeys(t *testing.T) {
	ks, err := keys.New(t.TempDir(), keys.LightKDF)
	require.NoError(t, err)
	k, err := crypto.GenerateKey()
	require.NoError(t, err)
	addrs, err := daemon.ImportKeys(ks, []daemon.Account{{Key: k, Password: "first"}})
	require.NoError(t, err)
	require.Equal(t, []common.Address{crypto.PubkeyToAddress(k.PublicKey)}, addrs)
	again, err := daemon.ImportKeys(ks, []daemon.Account{{Key: k, Password: "second"}})
	require.NoError(t, err)
	require.Equal(t, addrs, again)
	list, err := ks.List()
	require.NoError(t, err)
	require.Len(t, list, 1)
	_, err = ks.Unlock(addrs[0], "first")
	require.NoError(t, err)
}

// TestCheckChainID: a node or a deployment is refused on a chain whose id
// is not chain.id, naming both.
func TestCheckChainID(t *testing.T) {
	ch := perundtest.NewChain(t, perundtest.ChainOptions{})
	cases := []struct {
		name string
		id   uint64
		url  string
		want string
	}{
		{"the configured chain", 1337, "", ""},
		{"another chain", 1, "", "config key chain.id: 1, but the chain at embedded has id 1337"},
		{"a provider's key is not shown", 1, "wss://user:s3cret@node.example/v3/s3cret",
			"config key chain.id: 1, but the chain at wss://node.example/… has id 1337"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			flags := map[string]any{"chain.id": tc.id}
			if tc.url != "" {
				flags["chain.url"] = tc.url
			}
			cfg, err := perundtest.Configure(perundtest.NodeOptions{Dir: t.TempDir(), Flags: flags})
			require.NoError(t, err)
			id, err := daemon.CheckChainID(ctxFor(t, 10*time.Second), ch, cfg)
			if tc.want != "" {
				require.EqualError(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.EqualValues(t, 1337, id.Uint64())
		})
	}
}

// TestDialRefusesDeployingWithoutKey: a configuration that asks for
// contracts to be deployed, without a deployer key, is refused before any
// connection is tried.
func TestDialRefusesDeployingWithoutKey(t *testing.T) {
	cfg, err := perundtest.Configure(perundtest.NodeOptions{Dir: t.TempDir(), Flags: map[string]any{
		"chain.url": "ws://127.0.0.1:1", "contracts.mode": config.ModeDeploy}})
	require.NoError(t, err)
	_, err = daemon.Dial(ctxFor(t, 10*time.Second), cfg, nil, discard())
	require.ErrorContains(t, err, "no deployer key")
}

// TestServeAPIFails: a server that cannot serve (its certificate is not
// there; perund run refuses such a configuration at its start) ends Done
// with the error, which perund run returns, and its port is closed.
func TestServeAPIFails(t *testing.T) {
	ch := perundtest.NewChain(t, perundtest.ChainOptions{})
	n := ch.Node(t, perundtest.NodeOptions{})
	cfg := n.Config().RPC
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS = config.TLS{Cert: t.TempDir() + "/missing.pem", Key: t.TempDir() + "/missing.key"}
	api, err := daemon.ServeAPI(rpc.NewServer(n, cfg, discard(), nil), cfg)
	require.NoError(t, err)
	perundtest.Recv(t, perundtest.Async(func() error { <-api.Done(); return nil }), 10*time.Second, "the server stops")
	require.ErrorContains(t, api.Err(), "rpc server: config key rpc.tls: load certificate")
	require.ErrorContains(t, api.Shutdown(ctxFor(t, 10*time.Second)), "load certificate")
	c, err := net.DialTimeout("tcp", api.Addr().String(), 5*time.Second)
	if err == nil {
		c.Close()
	}
	require.Error(t, err, "the listener is closed with the server")
}
