package rpc_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/node"
)

func httpURL(f *fixture, path string) string {
	return "http" + strings.TrimSuffix(strings.TrimPrefix(f.url, "ws"), "/rpc") + path
}

func TestUpgradeChecks(t *testing.T) {
	f := newFixture(t, map[string]any{"rpc.allowedOrigins": "https://wallet.example", "rpc.authToken": "s3cret"})
	tests := []struct {
		name   string
		url    string
		header http.Header
		status int
	}{
		{"no token", f.url, nil, http.StatusUnauthorized},
		{"wrong token", f.url + "?token=nope", nil, http.StatusUnauthorized},
		{"token in query", f.url + "?token=s3cret", nil, http.StatusSwitchingProtocols},
		{"bearer token", f.url, http.Header{"Authorization": {"Bearer s3cret"}}, http.StatusSwitchingProtocols},
		{"foreign origin", f.url + "?token=s3cret", http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"allowed origin", f.url + "?token=s3cret", http.Header{"Origin": {"https://wallet.example"}}, http.StatusSwitchingProtocols},
		{"same origin", f.url + "?token=s3cret", http.Header{"Origin": {httpURL(f, "")}}, http.StatusSwitchingProtocols},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws, resp, err := websocket.DefaultDialer.Dial(tc.url, tc.header)
			if ws != nil {
				ws.Close()
			}
			require.NotNil(t, resp, err)
			require.Equal(t, tc.status, resp.StatusCode)
		})
	}
}

// TestHealthStates: /healthz is 503 with {"status":"starting"} until the
// node is ready, 200 with "ready" then, and 503 again with "stopping" once
// the node closes. (A chain that is down is "chainUnreachable": the
// integration test of a stopped chain sees the 503.)
func TestHealthStates(t *testing.T) {
	f := newFixtureWith(t, nil, func(o *node.Options) { o.Starting = true })
	health := func() (int, string) {
		t.Helper()
		resp, err := http.Get(httpURL(f, "/healthz"))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		var body struct {
			Status string `json:"status"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		return resp.StatusCode, body.Status
	}
	code, status := health()
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "starting", status)
	f.node.SetReady()
	code, status = health()
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ready", status)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, f.node.Close(ctx))
	code, status = health()
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "stopping", status)
}

func TestHealthAndDiscover(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := http.Get(httpURL(f, "/healthz"))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.JSONEq(t, `{"status":"ready"}`, string(body))
	require.Equal(t, "default-src 'none'; frame-ancestors 'none'", resp.Header.Get("Content-Security-Policy"))
	require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
	require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))

	c := dial(t, f.url)
	var doc struct {
		OpenRPC string `json:"openrpc"`
		Methods []struct {
			Name           string `json:"name"`
			ParamStructure string `json:"paramStructure"`
			Params         *[]struct {
				Name     string `json:"name"`
				Required bool   `json:"required"`
				Schema   struct {
					Type string `json:"type"`
				} `json:"schema"`
			} `json:"params"`
			Result *struct {
				Name        string         `json:"name"`
				Description string         `json:"description"`
				Schema      map[string]any `json:"schema"`
			} `json:"result"`
		} `json:"methods"`
	}
	c.ok("rpc_discover", nil, &doc)
	require.Equal(t, "1.2.6", doc.OpenRPC)
	// The params of each method, "*" marking the required ones.
	params := map[string][]string{
		"rpc_discover": nil, "node_info": nil, "account_new": {"password*"}, "account_list": nil,
		"session_open": {"account*", "password*", "manualAccept"}, "session_resume": {"sessionId*", "token*"},
		"session_close": {"force"}, "session_info": nil, "contacts_add": {"alias*", "address*", "commAddress*"},
		"contacts_list": nil, "contacts_get": {"alias*"}, "contacts_remove": {"alias*"}, "chain_balance": {"address", "asset"},
		"channel_open": {"peer*", "balance*", "asset", "challengeDuration"}, "channel_list": {"state"}, "channel_get": {"channelId*"},
		"channel_send": {"channelId*", "amount*"}, "channel_request": {"channelId*", "amount*"}, "channel_close": {"channelId*"},
		"channel_forceClose": {"channelId*"}, "dispute_list": {"channelId"}, "proposal_list": nil,
		"proposal_respond": {"proposalId*", "accept*", "reason"}, "update_list": nil, "update_respond": {"updateId*", "accept*", "reason"},
		"perun_subscribe": {"topic*"}, "perun_unsubscribe": {"subscription*"},
	}
	documented := map[string][]string{}
	for _, m := range doc.Methods {
		// Params by name, or an array holding that object (below).
		require.Equal(t, "either", m.ParamStructure, m.Name)
		require.NotNil(t, m.Params, "%s: params", m.Name)
		got := []string{}
		for _, p := range *m.Params {
			require.NotEmpty(t, p.Schema.Type, "%s.%s: schema", m.Name, p.Name)
			if p.Required {
				p.Name += "*"
			}
			got = append(got, p.Name)
		}
		documented[m.Name] = got
		require.NotNil(t, m.Result, "%s: result", m.Name)
		require.Equal(t, "result", m.Result.Name, m.Name)
		require.NotEmpty(t, m.Result.Description, m.Name)
		require.NotNil(t, m.Result.Schema, "%s: result schema", m.Name)
	}
	for m, want := range params {
		got, ok := documented[m]
		require.True(t, ok, m)
		require.ElementsMatch(t, want, got, m)
	}
	var info map[string]any
	c.ok("node_info", []any{}, &info)
	require.Equal(t, "1337", info["chainId"])
	var acc map[string]string
	c.ok("account_new", map[string]any{"password": "pw"}, &acc)
	require.Regexp(t, "^0x[0-9a-fA-F]{40}$", acc["address"])
	c.ok("session_open", []any{map[string]any{"account": acc["address"], "password": "pw"}}, nil)
	var bal map[string]string
	c.ok("chain_balance", map[string]any{"asset": "ETH"}, &bal)
	require.Equal(t, eth(100).String(), bal["balance"], "dev funding of new accounts")
}

func TestAccountNewDisabled(t *testing.T) {
	f := newFixture(t, map[string]any{"allowAccountCreation": false})
	dial(t, f.url).fail("account_new", map[string]any{"password": "pw"}, 1001)
}

// TestSessionBinding: a connection acts only for its own session; a second
// connection resumes a session with its token; subscriptions end with
// their connection.
func TestSessionBinding(t *testing.T) {
	f := newFixture(t, nil)
	alice := login(t, f, f.alice, "alice")
	bob := dial(t, f.url)
	var s struct {
		SessionID string `json:"sessionId"`
		Token     string `json:"token"`
	}
	bob.ok("session_open", map[string]any{"account": f.bob.Hex(), "password": "bob"}, &s)
	require.Regexp(t, "^0x[0-9a-f]{64}$", s.Token)

	ch := openChannel(t, alice, bob, eth(1), eth(1))
	// alice cannot answer bob's things or see bob's subscriptions.
	var sub string
	bob.ok("perun_subscribe", []string{"updates"}, &sub)
	var removed bool
	alice.ok("perun_unsubscribe", []string{sub}, &removed)
	require.False(t, removed, "another connection's subscription is not ours to end")

	// A second connection resumes bob's session and sees the channel.
	bob2 := dial(t, f.url)
	bob2.fail("session_resume", map[string]any{"sessionId": s.SessionID, "token": strings.Repeat("0", 66)}, 1001)
	bob2.ok("session_resume", map[string]any{"sessionId": s.SessionID, "token": s.Token}, nil)
	var got channelView
	bob2.ok("channel_get", map[string]any{"channelId": ch.ChannelID}, &got)
	require.Equal(t, "alice", got.Peer)

	// Opening the same account again attaches to the running session.
	var again struct {
		SessionID string `json:"sessionId"`
	}
	bob3 := dial(t, f.url)
	bob3.ok("session_open", map[string]any{"account": f.bob.Hex(), "password": "bob"}, &again)
	require.Equal(t, s.SessionID, again.SessionID)
}

// TestManualAcceptAndExpiry: with manualAccept, payments wait for the user;
// unanswered proposals and updates expire and are rejected.
func TestManualAcceptAndExpiry(t *testing.T) {
	f := newFixture(t, map[string]any{"channel.responseTimeout": "1s"})
	alice := login(t, f, f.alice, "alice")
	bob := dial(t, f.url)
	bob.ok("session_open", map[string]any{"account": f.bob.Hex(), "password": "bob", "manualAccept": true}, nil)

	// Nobody answers the proposal: it expires.
	bob.ok("perun_subscribe", []string{"proposals"}, nil)
	e := alice.fail("channel_open", map[string]any{"peer": "bob", "balance": map[string]string{"mine": "1000", "theirs": "0"}}, 1005)
	require.Contains(t, e["data"].(map[string]any)["reason"], "expired")
	bob.note(func(r map[string]any) bool { return r["status"] == "expired" })
	var props []any
	bob.ok("proposal_list", nil, &props)
	require.Empty(t, props)

	f2 := newFixture(t, map[string]any{"channel.responseTimeout": "3s"})
	alice = login(t, f2, f2.alice, "alice")
	bob = dial(t, f2.url)
	bob.ok("session_open", map[string]any{"account": f2.bob.Hex(), "password": "bob", "manualAccept": true}, nil)
	ch := openChannel(t, alice, bob, eth(1), eth(1))
	bob.ok("perun_subscribe", []string{"updates"}, nil)
	done := make(chan map[string]any, 1)
	go func() { done <- alice.call("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "5"}) }()
	u := bob.note(func(r map[string]any) bool { return r["kind"] == "payment" && r["status"] == "pending" })
	var ups []map[string]any
	bob.ok("update_list", nil, &ups)
	require.Len(t, ups, 1)
	bob.ok("update_respond", map[string]any{"updateId": u["updateId"], "accept": true}, nil)
	res := perundtest.Recv(t, done, time.Minute, "alice's payment")
	require.Nil(t, res["error"])

	// Unanswered: the payment expires and alice learns that bob rejected.
	alice.fail("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "5"}, 1005)
	bob.note(func(r map[string]any) bool { return r["status"] == "expired" })
	var v channelView
	alice.ok("channel_get", map[string]any{"channelId": ch.ChannelID}, &v)
	require.Equal(t, uint64(1), v.Version)
}
