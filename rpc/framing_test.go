package rpc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// closedWith waits (up to 10 s) until c's connection ends and requires that
// it ended with a close frame of code; it returns the data frames that came
// before.
func closedWith(t *testing.T, c *client, code int) [][]byte {
	t.Helper()
	var got [][]byte
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m, open := <-c.Raw:
			if !open {
				var ce *websocket.CloseError
				require.ErrorAs(t, c.ReadErr, &ce, "want close code %d", code)
				require.Equal(t, code, ce.Code, "close code (%v)", c.ReadErr)
				return got
			}
			got = append(got, m)
		case <-deadline:
			t.Fatalf("connection not closed within 10s (want close code %d)", code)
			return nil
		}
	}
}

// smallBufferDialer dials with a receive buffer of a few KiB: what the
// server sends while the client does not read stays queued on the
// server's side instead of in the client's socket.
func smallBufferDialer() *websocket.Dialer {
	return &websocket.Dialer{HandshakeTimeout: 10 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if tc, ok := nc.(*net.TCPConn); ok {
				if err := tc.SetReadBuffer(16 << 10); err != nil {
					nc.Close()
					return nil, err
				}
			}
			return nc, nil
		}}
}

// TestOversizeFrameCloses1009: a message above rpc.maxMessageSize closes
// its connection with 1009, and every client reads that close frame, not a
// reset (1006), also one that reads only after it has sent the message
// while the answers to its earlier requests are still queued on the
// server's side. Before, the server closed the socket with the rest of
// the message unread: the kernel reset the connection and dropped what it
// had not sent yet, the close frame included. Each case runs on 20
// connections.
func TestOversizeFrameCloses1009(t *testing.T) {
	f := newFixture(t, map[string]any{"rpc.maxMessageSize": 4096})
	other := dial(t, f.url)
	tests := []struct {
		name    string
		size    int // bytes of the oversize message's params
		backlog int // requests sent before it, answered with about 8 KiB each
	}{
		{"8KiB", 8 << 10, 0},
		{"256KiB", 256 << 10, 0},
		{"64KiB behind queued answers", 64 << 10, 8},
	}
	const conns = 20
	t.Run("group", func(t *testing.T) {
		for _, tc := range tests {
			for i := 0; i < conns; i++ {
				t.Run(fmt.Sprintf("%s/conn%02d", tc.name, i), func(t *testing.T) {
					t.Parallel()
					d := websocket.DefaultDialer
					if tc.backlog > 0 {
						d = smallBufferDialer()
					}
					ws, _, err := d.Dial(f.url, nil)
					require.NoError(t, err)
					t.Cleanup(func() { ws.Close() })
					for j := 0; j < tc.backlog; j++ {
						require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"jsonrpc":"2.0","method":"rpc_discover","id":%d}`, j))))
					}
					if tc.backlog > 0 {
						// The answers queue up meanwhile: the test passes
						// without this pause, which only makes a reset
						// likelier.
						time.Sleep(300 * time.Millisecond)
					}
					frame := `{"jsonrpc":"2.0","method":"node_info","id":"big","params":{"x":"` + strings.Repeat("a", tc.size) + `"}}`
					// A write error is no failure of its own: the close
					// code read back tells whether the server reset the
					// connection.
					if err := ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
						t.Logf("write: %v", err)
					}
					require.NoError(t, ws.SetReadDeadline(time.Now().Add(20*time.Second)))
					answers := 0
					for {
						_, msg, err := ws.ReadMessage()
						if err != nil {
							var ce *websocket.CloseError
							require.ErrorAs(t, err, &ce, "after %d of %d answers", answers, tc.backlog)
							require.Equal(t, websocket.CloseMessageTooBig, ce.Code, "%v", err)
							break
						}
						answers++
						require.NotEqual(t, `"big"`, rawID(t, msg), "the oversize message is not answered")
					}
					require.LessOrEqual(t, answers, tc.backlog)
				})
			}
		}
	})
	// The other connection is unaffected.
	other.ok("node_info", nil, nil)
}

// rawID returns the id member of a response exactly as it was written.
func rawID(t *testing.T, msg []byte) string {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(msg, &m), "%s", msg)
	id, ok := m["id"]
	require.True(t, ok, "no id: %s", msg)
	return string(id)
}

// TestNumberIDsEchoedExactly: any JSON number is a valid id, also one that
// no float64 holds, and it is echoed byte for byte, in a result, in an
// error and in a batch.
func TestNumberIDsEchoedExactly(t *testing.T) {
	f := newFixture(t, nil)
	ids := []struct{ name, id string }{
		{"exponent above float64", "1e400"},
		{"negative exponent above float64", "-1e400"},
		{"exponent below float64", "1e-400"},
		{"401-digit integer", "1" + strings.Repeat("0", 400)},
		{"negative 401-digit integer", "-9" + strings.Repeat("8", 400)},
		{"negative zero", "-0"},
		{"trailing zero", "1.50"},
		{"capital exponent with sign", "1E+2"},
		{"zero fraction exponent", "0.0e-0"},
	}
	for _, tc := range ids {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, f.url)

			c.send(`{"jsonrpc":"2.0","method":"node_info","id":` + tc.id + `}`)
			msg := c.next()
			require.Equal(t, tc.id, rawID(t, msg), "result: %s", msg)
			require.Contains(t, string(msg), `"result":`, "%s", msg)

			c.send(`{"jsonrpc":"2.0","method":"no_such_method","id":` + tc.id + `}`)
			msg = c.next()
			require.Equal(t, tc.id, rawID(t, msg), "error: %s", msg)
			require.Contains(t, string(msg), `"code":-32601`, "%s", msg)

			c.send(`[{"jsonrpc":"2.0","method":"node_info","id":` + tc.id + `},{"jsonrpc":"2.0","method":"node_info","id":"s"}]`)
			msg = c.next()
			var list []json.RawMessage
			require.NoError(t, json.Unmarshal(msg, &list), "%s", msg)
			require.Len(t, list, 2, "%s", msg)
			require.Equal(t, tc.id, rawID(t, list[0]), "batch: %s", msg)
		})
	}
}

// TestInvalidUTF8: a text frame that is not UTF-8 closes the connection
// with 1007 (RFC 6455, 8.1) and is not answered; a binary frame that is not
// UTF-8 is no JSON text (RFC 8259, 8.1) and is answered -32700 with a null
// id. No answer carries the invalid bytes back.
func TestInvalidUTF8(t *testing.T) {
	f := newFixture(t, nil)
	bad := []struct{ name, frame string }{
		{"in the method", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"node_\xff\"}"},
		{"in a string id", "{\"jsonrpc\":\"2.0\",\"id\":\"a\xffb\",\"method\":\"node_info\"}"},
		{"in params", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"contacts_get\",\"params\":{\"alias\":\"\xc3\x28\"}}"},
		{"overlong encoding", "{\"jsonrpc\":\"2.0\",\"id\":\"\xc0\xaf\",\"method\":\"node_info\"}"},
		{"encoded surrogate", "{\"jsonrpc\":\"2.0\",\"id\":\"\xed\xa0\x80\",\"method\":\"node_info\"}"},
		{"truncated sequence at the end", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"node_info\"}\xe2\x82"},
		{"in a batch member", "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"node_info\"},{\"jsonrpc\":\"2.0\",\"id\":\"\xfe\",\"method\":\"node_info\"}]"},
		{"not JSON", "\xff\xfe\xfd"},
	}
	for _, tc := range bad {
		t.Run("text "+tc.name, func(t *testing.T) {
			t.Parallel()
			require.False(t, utf8.ValidString(tc.frame))
			c := dial(t, f.url)
			c.send(tc.frame)
			msgs := closedWith(t, c, websocket.CloseInvalidFramePayloadData)
			require.Empty(t, msgs, "a text frame that is not UTF-8 is not answered")
		})
		t.Run("binary "+tc.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, f.url)
			require.NoError(t, c.WS.WriteMessage(websocket.BinaryMessage, []byte(tc.frame)))
			msg := c.next()
			require.True(t, utf8.Valid(msg), "the answer is UTF-8: %q", msg)
			requireShape(t, `{"jsonrpc":"2.0","error":{"code":-32700},"id":null}`, msg)
			c.ok("node_info", nil, nil) // the connection goes on
		})
	}
	t.Run("valid non-ASCII text", func(t *testing.T) {
		t.Parallel()
		c := dial(t, f.url)
		c.send(`{"jsonrpc":"2.0","id":"ä€😀","method":"node_ä"}`)
		msg := c.next()
		require.True(t, utf8.Valid(msg), "%q", msg)
		require.Equal(t, `"ä€😀"`, rawID(t, msg))
		requireShape(t, `{"jsonrpc":"2.0","error":{"code":-32601},"id":"ä€😀"}`, msg)
		c.ok("node_info", nil, nil)
	})
}

// TestSubscribeAsNotification: a perun_subscribe sent as a notification
// (alone or in a batch) gets no answer and makes no subscription: the
// session's hub has only the subscription made by a request, and an event
// reaches the client once, through that one.
func TestSubscribeAsNotification(t *testing.T) {
	f := newFixture(t, map[string]any{"channel.responseTimeout": "30s"})
	alice := login(t, f, f.alice, "alice")
	var info struct {
		SessionID string `json:"sessionId"`
		Token     string `json:"token"`
	}
	dial(t, f.url).ok("session_open", map[string]any{"account": f.bob.Hex(), "password": "bob"}, &info)
	sess, err := f.node.ResumeSession(info.SessionID, info.Token)
	require.NoError(t, err)
	resume := map[string]any{"sessionId": info.SessionID, "token": info.Token}

	tests := []struct{ name, frame string }{
		{"alone, array params", `{"jsonrpc":"2.0","method":"perun_subscribe","params":["proposals"]}`},
		{"alone, named params", `{"jsonrpc":"2.0","method":"perun_subscribe","params":{"topic":"proposals"}}`},
		{"in a batch", `[{"jsonrpc":"2.0","method":"perun_subscribe","params":["proposals"]},{"jsonrpc":"2.0","method":"node_info","id":"batch"}]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bob := dial(t, f.url)
			bob.ok("session_resume", resume, nil)
			bob.send(tc.frame)
			var sub string
			bob.ok("perun_subscribe", []string{"proposals"}, &sub)
			if strings.HasPrefix(tc.frame, "[") {
				msg := bob.next()
				var list []json.RawMessage
				require.NoError(t, json.Unmarshal(msg, &list), "%s", msg)
				require.Len(t, list, 1, "the batch answers only its request: %s", msg)
				require.Equal(t, `"batch"`, rawID(t, list[0]), "%s", msg)
			}

			// A proposal from alice: bob's hub publishes it to every
			// subscription of the topic at once.
			opened := make(chan map[string]any, 1)
			go func() {
				opened <- alice.call("channel_open", map[string]any{"peer": "bob", "balance": map[string]string{"mine": "1", "theirs": "0"}})
			}()
			var first map[string]any
			select {
			case first = <-bob.Notes:
			case <-time.After(time.Minute):
				t.Fatal("no proposal notification")
			}
			params := first["params"].(map[string]any)
			require.Equal(t, sub, params["subscription"], "the first notification comes from the subscription made by the request")
			prop := params["result"].(map[string]any)
			require.Equal(t, "pending", prop["status"])
			require.Equal(t, 1, subscriptionCount(sess), "only the requested subscription exists")
			select {
			case n := <-bob.Notes:
				t.Fatalf("a second notification: %v", n)
			case <-time.After(time.Second):
			}
			bob.ok("proposal_respond", map[string]any{"proposalId": prop["proposalId"], "accept": false, "reason": "test"}, nil)
			select {
			case r := <-opened:
				require.EqualValues(t, 1005, r["error"].(map[string]any)["code"], "%v", r)
			case <-time.After(time.Minute):
				t.Fatal("channel_open did not end")
			}
			// Only the requested subscription's events arrive (rejected).
			quiet := time.After(500 * time.Millisecond)
		drain:
			for {
				select {
				case n := <-bob.Notes:
					p := n["params"].(map[string]any)
					require.Equal(t, sub, p["subscription"], "a notification of an unknown subscription: %v", n)
				case <-quiet:
					break drain
				}
			}
			require.Equal(t, 1, subscriptionCount(sess))
			select {
			case m := <-bob.Raw:
				t.Fatalf("the notification got an answer: %s", m)
			default:
			}
			bob.ok("perun_unsubscribe", []string{sub}, nil)
			require.Equal(t, 0, subscriptionCount(sess))
		})
	}
}

// channelEvent is one notification of the channels topic.
type channelEvent struct{ channelID, state string }

// TestChannelEventsOnce: during a cooperative close initiated by alice,
// bob's (and alice's) channels subscription tells each state of the
// channel once: closing once, closed once. Bob answers the close himself
// (manual) or the node does (channel.autoAcceptClose).
func TestChannelEventsOnce(t *testing.T) {
	for _, auto := range []bool{false, true} {
		// Not in parallel: both nodes' sessions would send transactions
		// from the same accounts on chains with the same id, and go-perun
		// keeps one nonce cache per chain id and account in the process.
		t.Run(fmt.Sprintf("autoAcceptClose=%v", auto), func(t *testing.T) {
			f := newFixture(t, map[string]any{"channel.autoAcceptClose": auto})
			alice := login(t, f, f.alice, "alice")
			bob := login(t, f, f.bob, "bob")
			ch := openChannel(t, alice, bob, eth(1), eth(1))

			var bobChannels, bobUpdates, aliceChannels string
			bob.ok("perun_subscribe", []string{"channels"}, &bobChannels)
			bob.ok("perun_subscribe", []string{"updates"}, &bobUpdates)
			alice.ok("perun_subscribe", []string{"channels"}, &aliceChannels)

			closed := make(chan map[string]any, 1)
			go func() { closed <- alice.call("channel_close", map[string]any{"channelId": ch.ChannelID}) }()
			bobSeen := map[channelEvent]int{}
			var bobOrder []string
			// record notes a channels event of bob's; those of the open
			// channel (told before the subscription, or late) do not count.
			record := func(r map[string]any) {
				ev := channelEvent{r["channelId"].(string), r["state"].(string)}
				if ev.state == "open" {
					return
				}
				bobSeen[ev]++
				bobOrder = append(bobOrder, ev.state)
			}
			responded := make(chan map[string]any, 1)
			deadline := time.After(3 * time.Minute)
			for bobSeen[channelEvent{ch.ChannelID, "closed"}] == 0 {
				select {
				case n := <-bob.Notes:
					p := n["params"].(map[string]any)
					r := p["result"].(map[string]any)
					switch p["subscription"] {
					case bobChannels:
						record(r)
					case bobUpdates:
						if !auto && r["kind"] == "close" && r["status"] == "pending" {
							go func() {
								responded <- bob.call("update_respond", map[string]any{"updateId": r["updateId"], "accept": true})
							}()
						}
					}
				case <-deadline:
					t.Fatalf("bob's channel did not close; bob saw %v", bobOrder)
				}
			}
			select {
			case r := <-closed:
				require.Nil(t, r["error"], "channel_close: %v", r)
				v := r["result"].(map[string]any)
				require.Equal(t, "closed", v["state"])
				require.Equal(t, "agreement", v["closedBy"])
			case <-time.After(3 * time.Minute):
				t.Fatal("channel_close did not return")
			}
			if !auto {
				select {
				case r := <-responded:
					require.Nil(t, r["error"], "update_respond: %v", r)
				case <-time.After(time.Minute):
					t.Fatal("update_respond did not return")
				}
			}
			// A late duplicate would come right after.
			quiet := time.After(time.Second)
		drain:
			for {
				select {
				case n := <-bob.Notes:
					p := n["params"].(map[string]any)
					if p["subscription"] == bobChannels {
						record(p["result"].(map[string]any))
					}
				case <-quiet:
					break drain
				}
			}
			require.Equal(t, []string{"closing", "closed"}, bobOrder, "bob's channels events")
			for ev, n := range bobSeen {
				require.Equal(t, 1, n, "bob: %v told %d times (%v)", ev, n, bobOrder)
			}

			// alice's side, all of it arrived by now.
			var aliceOrder []string
			quiet = time.After(500 * time.Millisecond)
		drainAlice:
			for {
				select {
				case n := <-alice.Notes:
					p := n["params"].(map[string]any)
					if st := p["result"].(map[string]any)["state"]; p["subscription"] == aliceChannels && st != "open" {
						aliceOrder = append(aliceOrder, st.(string))
					}
				case <-quiet:
					break drainAlice
				}
			}
			require.Equal(t, []string{"closing", "closed"}, aliceOrder, "alice's channels events")
		})
	}
}
