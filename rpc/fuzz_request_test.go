package rpc

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"slices"
	"sync"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/perund/perund/contacts"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/perunlog"
)

// fuzzConn is a connection bound to a real session on a real node (on the
// embedded chain) whose frames are collected instead of sent.
func fuzzConn(tb testing.TB) (*conn, func() [][]byte) {
	tb.Helper()
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	perunlog.Install(lg)
	key, _ := crypto.GenerateKey()
	addr := crypto.PubkeyToAddress(key.PublicKey)
	ch := perundtest.NewChain(tb, perundtest.ChainOptions{Alloc: map[common.Address]*big.Int{addr: perundtest.Eth(100)}})
	n := ch.Node(tb, perundtest.NodeOptions{Logger: lg, Keys: map[string]string{perundtest.HexKey(key): "pw"},
		Flags: map[string]any{"channel.responseTimeout": "1s", "comm.dialTimeout": "200ms"}})
	s := perundtest.Login(tb, n, addr, "pw")
	peer, _ := crypto.GenerateKey()
	if _, err := s.AddContact(contacts.Contact{Alias: "bob", Address: crypto.PubkeyToAddress(peer.PublicKey), CommAddress: "127.0.0.1:1"}); err != nil {
		tb.Fatal(err)
	}
	srv := NewServer(n, n.Config().RPC, lg, nil)
	cn := newConn(srv, nil)
	tb.Cleanup(cn.cancel)
	cn.session.Store(s)
	var mu sync.Mutex
	var frames [][]byte
	cn.sink = func(b []byte) {
		mu.Lock()
		frames = append(frames, append([]byte(nil), b...))
		mu.Unlock()
	}
	take := func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		out := frames
		frames = nil
		return out
	}
	return cn, take
}

// requestMethods returns the method names the server reads from frame: that of
// the request object or of each member of a batch, decoded as handleOne
// does (so that escapes such as session\u005fclose are seen through).
func requestMethods(frame []byte) []string {
	reqs := []json.RawMessage{frame}
	if t := bytes.TrimSpace(frame); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(t, &reqs); err != nil {
			return nil
		}
	}
	var names []string
	for _, r := range reqs {
		var fields map[string]json.RawMessage
		var name string
		if json.Unmarshal(r, &fields) == nil && json.Unmarshal(fields["method"], &name) == nil {
			names = append(names, name)
		}
	}
	return names
}

// FuzzRequest sends any frame through the whole request path (framing,
// dispatch, every method's params decoding) of a connection bound to a
// real session: every answer is a JSON-RPC 2.0 response and no input
// causes an internal error (-32603, which a panic would also give).
func FuzzRequest(f *testing.F) {
	id := `"0x` + string(bytes.Repeat([]byte("ab"), 32)) + `"`
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"node_info"}`,
		`{"jsonrpc":"2.0","id":1,"method":"account_list","params":[]}`,
		`{"jsonrpc":"2.0","id":1,"method":"account_new","params":{"password":"x"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"session_open","params":{"account":"0x0000000000000000000000000000000000000001","password":"x"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"session_resume","params":[{"sessionId":"0x01","token":"0x02"}]}`,
		`{"jsonrpc":"2.0","id":1,"method":"session_info"}`,
		`{"jsonrpc":"2.0","id":1,"method":"contacts_add","params":{"alias":"carol","address":"0x0000000000000000000000000000000000000002","commAddress":"127.0.0.1:9"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"contacts_get","params":{"alias":"bob"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"contacts_remove","params":{"alias":"carol"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"contacts_list"}`,
		`{"jsonrpc":"2.0","id":1,"method":"chain_balance","params":{"asset":"ETH"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"channel_open","params":{"peer":"bob","balance":{"mine":"1","theirs":"0"},"challengeDuration":5}}`,
		`{"jsonrpc":"2.0","id":1,"method":"channel_list","params":{"state":"open"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"channel_get","params":{"channelId":` + id + `}}`,
		`{"jsonrpc":"2.0","id":1,"method":"channel_send","params":{"channelId":` + id + `,"amount":"5"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"channel_request","params":{"channelId":` + id + `,"amount":"5"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"channel_close","params":{"channelId":` + id + `}}`,
		`{"jsonrpc":"2.0","id":1,"method":"channel_forceClose","params":{"channelId":` + id + `}}`,
		`{"jsonrpc":"2.0","id":1,"method":"proposal_list"}`,
		`{"jsonrpc":"2.0","id":1,"method":"proposal_respond","params":{"proposalId":` + id + `,"accept":true}}`,
		`{"jsonrpc":"2.0","id":1,"method":"update_list"}`,
		`{"jsonrpc":"2.0","id":1,"method":"update_respond","params":{"updateId":` + id + `,"accept":false,"reason":"no"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"perun_subscribe","params":["updates"]}`,
		`{"jsonrpc":"2.0","id":1,"method":"perun_unsubscribe","params":["0x01"]}`,
		`{"jsonrpc":"2.0","id":1,"method":"rpc_discover"}`,
		`[{"jsonrpc":"2.0","id":1,"method":"node_info"},{"jsonrpc":"2.0","method":"session_info"}]`,
		`[]`, `{`, `[1]`, `{"jsonrpc":"2.0","id":{},"method":"x"}`,
		`{"jsonrpc":"2.0","id":1,"method":"session\u005fclose"}`,
		`[{"jsonrpc":"2.0","id":1,"method":"node_info"},{"jsonrpc":"2.0","method":"session\u005fclose"}]`,
	} {
		f.Add([]byte(s))
	}
	cn, take := fuzzConn(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if slices.Contains(requestMethods(frame), "session_close") {
			t.Skip("ends the session the other inputs use")
		}
		cn.dispatch(frame)
		cn.calls.Wait()
		if cn.session.Load() == nil {
			t.Fatalf("%q ended the session the other inputs use", frame)
		}
		for _, out := range take() {
			var msgs []map[string]json.RawMessage
			if bytes.HasPrefix(out, []byte("[")) {
				if err := json.Unmarshal(out, &msgs); err != nil {
					t.Fatalf("answer is not JSON: %s", out)
				}
			} else {
				var m map[string]json.RawMessage
				if err := json.Unmarshal(out, &m); err != nil {
					t.Fatalf("answer is not JSON: %s", out)
				}
				msgs = append(msgs, m)
			}
			for _, m := range msgs {
				if string(m["jsonrpc"]) != `"2.0"` {
					t.Fatalf("not a JSON-RPC 2.0 message: %s", out)
				}
				if e, ok := m["error"]; ok {
					var je struct{ Code int64 }
					_ = json.Unmarshal(e, &je)
					if je.Code == -32603 {
						t.Fatalf("internal error for %q: %s", frame, out)
					}
				}
			}
		}
	})
}
