package rpc

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/subscriptions"
)

// TestDecodeEnvelopeAsMap: the one-pass decode of a request object finds
// the members that a decoded map finds, by their exact names only.
func TestDecodeEnvelopeAsMap(t *testing.T) {
	for _, in := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"node_info"}`,
		` {"jsonrpc":"2.0","id":"a","method":"m","params":{"x":1}} `,
		`{"jsonrpc":"2.0","id":null,"method":"m","params":null}`,
		`{"jsonrpc":"2.0","ID":1,"method":"m"}`,
		`{"jsonrpc":"2.0","id":1,"ID":2,"method":"m"}`,
		`{"jsonrpc":"2.0","Id":2,"id":1,"method":"m"}`,
		`{"JSONRPC":"2.0","id":1,"Method":"m","Params":[1]}`,
		`{"jsonrpc":"2.0","\u0069d":1,"method":"m"}`,
		`{"jsonrpc":"2.0","\u0049D":1,"method":"m"}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","paramſ":[1]}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","id":7}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":{"id":"ID"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":["ümlaut"]}`,
		`{"jsonrpc":"2.0","id":1,"method":"m",}`,
		`{"jsonrpc":"2.0","id":1,"method":"m"`,
		`{"a":"b\"c","id":1}`,
		`[1]`, `null`, `1`, `"x"`, ``, `{}`, `{"id":1} x`,
	} {
		env, valid, object := decodeEnvelope([]byte(in))
		require.Equal(t, json.Valid([]byte(in)), valid, in)
		var fields map[string]json.RawMessage
		isObject := valid && json.Unmarshal([]byte(in), &fields) == nil && fields != nil
		require.Equal(t, isObject, object, in)
		if !isObject {
			continue
		}
		require.Equal(t, envelope{JSONRPC: fields["jsonrpc"], ID: fields["id"], Method: fields["method"], Params: fields["params"]}, env, in)
	}
}

// TestNotifySharedBytes: a notification of a shared event is the frame
// notify writes for the same event.
func TestNotifySharedBytes(t *testing.T) {
	ev := map[string]any{"channelId": "0x01", "html": "<a&b>", "n": 1.5, "list": []int{1, 2}}
	want, err := json.Marshal(notification{JSONRPC: "2.0", Method: "perun_subscription",
		Params: notificationParams{Subscription: "0xabc", Result: ev}})
	require.NoError(t, err)
	var got []byte
	c := &conn{sink: func(b []byte) { got = b }}
	c.notifyShared(notificationPrefix("0xabc"), "0xabc", &subscriptions.Event{Value: ev})
	require.Equal(t, string(want), string(got))
}
