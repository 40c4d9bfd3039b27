package rpc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/rpc/rpctest"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key;
// it returns their paths and a pool trusting the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	c := perundtest.SelfSigned(t)
	certFile, keyFile = c.Files(t)
	return certFile, keyFile, c.Pool
}

// TestTLS: with rpc.tls the API is wss:// and the health check https://;
// plain ws:// is refused.
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	f := newFixture(t, map[string]any{"rpc.tls.cert": certFile, "rpc.tls.key": keyFile})
	require.True(t, strings.HasPrefix(f.url, "wss://"), f.url)

	tlsCfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	c := rpctest.DialWith(t, &websocket.Dialer{TLSClientConfig: tlsCfg, HandshakeTimeout: 10 * time.Second}, f.url)
	var s map[string]any
	c.OK("session_open", map[string]any{"account": f.alice.Hex(), "password": "alice"}, &s)
	require.Equal(t, f.alice.Hex(), s["address"])

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 10 * time.Second}
	resp, err := hc.Get(httpURL(f, "/healthz"))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.JSONEq(t, `{"status":"ready"}`, string(body))

	_, _, err = websocket.DefaultDialer.Dial("ws://"+strings.TrimPrefix(f.url, "wss://"), nil)
	require.Error(t, err, "plain WebSocket on the TLS port")
	_, _, err = (&websocket.Dialer{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}).Dial(f.url, nil)
	require.Error(t, err, "a client that does not trust the certificate")
}

// TestSlowLoris: a client that never finishes its upgrade request is
// dropped after rpc.handshakeTimeout while others are served.
func TestSlowLoris(t *testing.T) {
	f := newFixture(t, map[string]any{"rpc.handshakeTimeout": "500ms"})
	host := strings.TrimSuffix(strings.TrimPrefix(f.url, "ws://"), "/rpc")
	var slow []net.Conn
	for i := 0; i < 20; i++ {
		c, err := net.Dial("tcp", host)
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write([]byte("GET /rpc HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\n"))
		require.NoError(t, err)
		slow = append(slow, c)
	}
	ok := dial(t, f.url)
	var info map[string]any
	ok.ok("node_info", nil, &info)
	for _, c := range slow {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
		_, err := io.ReadAll(c) // the server answers 408 or nothing, then closes
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "slow client still connected: %v", err)
	}
	ok.ok("node_info", nil, &info)
}

// TestHostileFrames: deep nesting and oversized batches get their JSON-RPC
// error; the connection and others keep working.
func TestHostileFrames(t *testing.T) {
	f := newFixture(t, nil)
	c := dial(t, f.url)
	other := dial(t, f.url)
	nest := func(open, close string, n int) string { return strings.Repeat(open, n) + strings.Repeat(close, n) }
	batch := make([]string, 101)
	for i := range batch {
		batch[i] = fmt.Sprintf(`{"jsonrpc":"2.0","method":"node_info","id":%d}`, i)
	}
	tests := []struct {
		name  string
		frame string
		code  int
	}{
		{"deep array", nest("[", "]", 200000), -32700},
		{"deep object", nest(`{"a":`, "}", 100000), -32700},
		{"deep params", `{"jsonrpc":"2.0","id":1,"method":"node_info","params":` + nest("[", "]", 5000) + `}`, -32602},
		{"deep params of a call with params", `{"jsonrpc":"2.0","id":1,"method":"session_resume","params":{"sessionId":` + nest("[", "]", 5000) + `}}`, -32602},
		{"batch over the limit", "[" + strings.Join(batch, ",") + "]", -32600},
		// A text frame that is not UTF-8 closes the connection with 1007:
		// TestInvalidUTF8.
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.send(tc.frame)
			var r map[string]any
			require.NoError(t, json.Unmarshal(c.next(), &r))
			e, ok := r["error"].(map[string]any)
			require.True(t, ok, "%v", r)
			require.EqualValues(t, tc.code, e["code"], "%v", e)
			var info map[string]any
			c.ok("node_info", nil, &info)
			other.ok("node_info", nil, &info)
		})
	}
	var list []map[string]any
	c.send("[" + strings.Join(batch[:100], ",") + "]")
	require.NoError(t, json.Unmarshal(c.next(), &list))
	require.Len(t, list, 100, "a batch at the limit is answered")
}

// TestPasswordRateLimit: after three wrong passwords an account is locked
// for a second (doubling after each further failure), even for the right
// password; other accounts are not affected.
func TestPasswordRateLimit(t *testing.T) {
	f := newFixture(t, nil)
	c := dial(t, f.url)
	wrong := map[string]any{"account": f.alice.Hex(), "password": "guess"}
	for i := 0; i < 3; i++ {
		e := c.fail("session_open", wrong, 1001)
		require.Contains(t, e["message"], "wrong password")
	}
	e := c.fail("session_open", map[string]any{"account": f.alice.Hex(), "password": "alice"}, 1001)
	require.Contains(t, e["message"], "too many wrong passwords")
	require.EqualValues(t, 1, e["data"].(map[string]any)["retryAfter"])
	c.ok("session_open", map[string]any{"account": f.bob.Hex(), "password": "bob"}, nil)

	require.Eventually(t, func() bool {
		r := dial(t, f.url).call("session_open", map[string]any{"account": f.alice.Hex(), "password": "alice"})
		return r["error"] == nil
	}, 10*time.Second, 250*time.Millisecond, "the lock ends")
}

// TestOtherUsersResources: a connection bound to carol tries every method
// with alice's and bob's ids (channel, proposal, update, contact,
// subscription, session) and gets nothing; bob's things stay as they were.
func TestOtherUsersResources(t *testing.T) {
	f := newFixture(t, map[string]any{"channel.responseTimeout": "30s"})
	alice := login(t, f, f.alice, "alice")
	bob := dial(t, f.url)
	var bs struct {
		SessionID string `json:"sessionId"`
	}
	bob.ok("session_open", map[string]any{"account": f.bob.Hex(), "password": "bob", "manualAccept": true}, &bs)
	ch := openChannel(t, alice, bob, eth(1), eth(1))

	// bob has a pending proposal, a pending update and a subscription.
	var sub string
	bob.ok("perun_subscribe", []string{"updates"}, &sub)
	bob.ok("perun_subscribe", []string{"proposals"}, nil)
	sent := make(chan map[string]any, 1)
	go func() { sent <- alice.call("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "7"}) }()
	upd := bob.note(func(r map[string]any) bool { return r["kind"] == "payment" && r["status"] == "pending" })
	opened := make(chan map[string]any, 1)
	go func() {
		opened <- alice.call("channel_open", map[string]any{"peer": "bob", "balance": map[string]string{"mine": "1", "theirs": "0"}})
	}()
	prop := bob.note(func(r map[string]any) bool { return r["proposalId"] != nil && r["status"] == "pending" })

	carol := dial(t, f.url)
	var acc map[string]string
	carol.ok("account_new", map[string]any{"password": "carol"}, &acc)
	var cs struct {
		SessionID string `json:"sessionId"`
		Token     string `json:"token"`
		Address   string `json:"address"`
	}
	carol.ok("session_open", map[string]any{"account": acc["address"], "password": "carol"}, &cs)

	id := map[string]any{"channelId": ch.ChannelID}
	withAmount := map[string]any{"channelId": ch.ChannelID, "amount": "1"}
	denied := []struct {
		method string
		params any
		code   int
	}{
		{"channel_get", id, 1002},
		{"channel_send", withAmount, 1002},
		{"channel_request", withAmount, 1002},
		{"channel_close", id, 1002},
		{"channel_forceClose", id, 1002},
		{"proposal_respond", map[string]any{"proposalId": prop["proposalId"], "accept": true}, 1002},
		{"update_respond", map[string]any{"updateId": upd["updateId"], "accept": true}, 1002},
		{"contacts_get", map[string]any{"alias": "alice"}, 1002},
		{"contacts_remove", map[string]any{"alias": "alice"}, 1002},
		{"channel_open", map[string]any{"peer": f.bob.Hex(), "balance": map[string]string{"mine": "1", "theirs": "0"}}, 1002},
		{"session_resume", map[string]any{"sessionId": bs.SessionID, "token": cs.Token}, 1001},
		{"session_open", map[string]any{"account": f.bob.Hex(), "password": "carol"}, 1001},
	}
	for _, tc := range denied {
		t.Run(tc.method, func(t *testing.T) { carol.fail(tc.method, tc.params, tc.code) })
	}
	empty := []string{"channel_list", "proposal_list", "update_list", "contacts_list"}
	for _, m := range empty {
		var list []any
		carol.ok(m, nil, &list)
		require.Empty(t, list, m)
	}
	var removed bool
	carol.ok("perun_unsubscribe", []string{sub}, &removed)
	require.False(t, removed)
	var info map[string]any
	carol.ok("session_info", nil, &info)
	require.Equal(t, cs.Address, info["address"])
	require.Equal(t, cs.SessionID, info["sessionId"])

	// bob's things are untouched: he answers both, and his subscription
	// still delivers.
	bob.ok("update_respond", map[string]any{"updateId": upd["updateId"], "accept": true}, nil)
	require.Nil(t, perundtest.Recv(t, sent, time.Minute, "alice's payment")["error"])
	for accepted := false; !accepted; {
		n := perundtest.Recv(t, bob.Notes, time.Minute, "bob's updates subscription after carol's tries")
		p := n["params"].(map[string]any)
		r := p["result"].(map[string]any)
		accepted = p["subscription"] == sub && r["updateId"] == upd["updateId"] && r["status"] == "accepted"
	}
	bob.ok("proposal_respond", map[string]any{"proposalId": prop["proposalId"], "accept": false, "reason": "test"}, nil)
	r := perundtest.Recv(t, opened, time.Minute, "alice's proposal")
	require.EqualValues(t, 1005, r["error"].(map[string]any)["code"])
	var c map[string]any
	bob.ok("contacts_get", map[string]any{"alias": "alice"}, &c)
	require.Equal(t, f.alice.Hex(), c["address"], "bob's contact is still alice")
	var bv channelView
	bob.ok("channel_get", id, &bv)
	require.Equal(t, uint64(1), bv.Version)
	require.Equal(t, new(big.Int).Add(eth(1), big.NewInt(7)).String(), bv.Balance["mine"])
}

// TestGracefulShutdown: a shutdown interrupts a call in flight with 1006,
// closes the connection with 1001 and refuses new connections.
func TestGracefulShutdown(t *testing.T) {
	f := newFixture(t, map[string]any{"channel.responseTimeout": "30s"})
	alice := login(t, f, f.alice, "alice")
	bob := login(t, f, f.bob, "bob")
	bob.ok("perun_subscribe", []string{"proposals"}, nil)
	res := make(chan map[string]any, 1)
	go func() {
		res <- alice.call("channel_open", map[string]any{"peer": "bob", "balance": map[string]string{"mine": "1", "theirs": "0"}})
	}()
	bob.note(func(r map[string]any) bool { return r["status"] == "pending" })

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	f.srv.Shutdown(ctx)
	r := perundtest.Recv(t, res, time.Minute, "the interrupted channel_open")
	require.EqualValues(t, 1006, r["error"].(map[string]any)["code"], "%v", r)
	drain := time.After(30 * time.Second)
	for open := true; open; { // drain until the close frame
		select {
		case _, open = <-alice.Raw:
		case <-drain:
			t.Fatal("the connection did not close")
		}
	}
	require.True(t, websocket.IsCloseError(alice.ReadErr, websocket.CloseGoingAway), "%v", alice.ReadErr)
	_, _, err := websocket.DefaultDialer.Dial(f.url, nil)
	require.Error(t, err)
}
