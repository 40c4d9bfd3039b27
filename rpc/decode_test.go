package rpc

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDecodeParams: the one decoder of every method's params: by name, by
// position and as [{named}]; every refusal is -32602 with the full path of
// the field in data.field and in the message, never a blank.
func TestDecodeParams(t *testing.T) {
	id := "0x" + "AB" + "00000000000000000000000000000000000000000000000000000000000000"
	tests := []struct {
		name   string
		dst    func() any
		raw    string
		field  string // "" when it decodes
		msg    string // part of the message
		check  func(t *testing.T, v any)
		method string
	}{
		{name: "named", dst: func() any { return &transferParams{} }, raw: `{"channelId":"` + id + `","amount":"5"}`,
			check: func(t *testing.T, v any) {
				p := v.(*transferParams)
				require.Equal(t, Hash("0xab"+id[4:]), p.ChannelID, "kept in lower case")
				require.Equal(t, "5", p.Amount.String())
			}},
		{name: "positional", dst: func() any { return &transferParams{} }, raw: `["` + id + `","7"]`,
			check: func(t *testing.T, v any) { require.Equal(t, "7", v.(*transferParams).Amount.String()) }},
		{name: "named in an array", dst: func() any { return &transferParams{} }, raw: `[{"channelId":"` + id + `","amount":"9"}]`,
			check: func(t *testing.T, v any) { require.Equal(t, "9", v.(*transferParams).Amount.String()) }},
		{name: "too many positional", dst: func() any { return &transferParams{} }, raw: `["` + id + `","7","x"]`, field: "params", msg: "at most 2 (channelId, amount)"},
		{name: "missing", dst: func() any { return &transferParams{} }, raw: `{"channelId":"` + id + `"}`, field: "amount", msg: "amount is required"},
		{name: "null is missing", dst: func() any { return &transferParams{} }, raw: `{"channelId":"` + id + `","amount":null}`, field: "amount", msg: "amount is required"},
		{name: "unknown", dst: func() any { return &transferParams{} }, raw: `{"channelId":"` + id + `","amount":"1","memo":"x"}`, field: "memo", msg: "unknown parameter memo"},
		{name: "unknown empty name", dst: func() any { return &transferParams{} }, raw: `{"":""}`, field: `""`, msg: `unknown parameter ""`},
		{name: "amount as number", dst: func() any { return &transferParams{} }, raw: `{"channelId":"` + id + `","amount":5}`, field: "amount", msg: "amount must be a decimal string"},
		{name: "negative amount", dst: func() any { return &transferParams{} }, raw: `{"channelId":"` + id + `","amount":"-1"}`, field: "amount", msg: `got "-1"`},
		{name: "short id", dst: func() any { return &transferParams{} }, raw: `{"channelId":"0x00","amount":"1"}`, field: "channelId", msg: "channelId must be 0x followed by 64 hex digits"},
		{name: "nested unknown", dst: func() any { return &channelOpenParams{} },
			raw: `{"peer":"bob","balance":{"mine":"1","theirs":"0","extra":1}}`, field: "balance.extra", msg: "unknown parameter balance.extra"},
		{name: "nested missing", dst: func() any { return &channelOpenParams{} },
			raw: `{"peer":"bob","balance":{"mine":"1"}}`, field: "balance.theirs", msg: "balance.theirs is required"},
		{name: "nested wrong type", dst: func() any { return &channelOpenParams{} },
			raw: `{"peer":"bob","balance":{"mine":1,"theirs":"0"}}`, field: "balance.mine", msg: "balance.mine must be"},
		{name: "nested not an object", dst: func() any { return &channelOpenParams{} },
			raw: `{"peer":"bob","balance":"1"}`, field: "balance", msg: "balance must be an object"},
		{name: "negative integer", dst: func() any { return &channelOpenParams{} },
			raw: `{"peer":"bob","balance":{"mine":"1","theirs":"0"},"challengeDuration":-5}`, field: "challengeDuration", msg: "challengeDuration must be of type non-negative integer"},
		{name: "bad symbol", dst: func() any { return &channelOpenParams{} },
			raw: `{"peer":"bob","balance":{"mine":"1","theirs":"0"},"asset":"E TH"}`, field: "asset", msg: "asset must be an asset symbol"},
		{name: "topic of a wrong type", dst: func() any { return &subscribeParams{} }, raw: `{"topic":5}`, field: "topic", msg: "topic must be one of proposals, updates, channels, disputes"},
		{name: "unknown topic", dst: func() any { return &subscribeParams{} }, raw: `["blocks"]`, field: "topic", msg: "topic must be one of"},
		{name: "topic positional", dst: func() any { return &subscribeParams{} }, raw: `["channels"]`,
			check: func(t *testing.T, v any) { require.Equal(t, Topic("channels"), v.(*subscribeParams).Topic) }},
		{name: "subscription of a wrong type", dst: func() any { return &unsubscribeParams{} }, raw: `{"subscription":5}`, field: "subscription", msg: "subscription must be of type string"},
		{name: "unknown field of unsubscribe", dst: func() any { return &unsubscribeParams{} }, raw: `{"subscription":"x","topic":"y"}`, field: "topic", msg: "unknown parameter topic"},
		{name: "params not an object", dst: func() any { return &noParams{} }, raw: `[1]`, field: "params", msg: "at most 0"},
		{name: "empty array", dst: func() any { return &noParams{} }, raw: `[]`},
		{name: "address checksum", dst: func() any { return &sessionOpenParams{} },
			raw: `{"account":"0x70997970c51812dc3a010c7d01b50e0d17dc79C8","password":"x"}`, field: "account", msg: "account "},
		{name: "object first param stays positional", dst: func() any {
			return &struct {
				Balance balanceParams `json:"balance"`
			}{}
		}, raw: `[{"mine":"1","theirs":"2"}]`,
			check: func(t *testing.T, v any) {
				require.Equal(t, "2", v.(*struct {
					Balance balanceParams `json:"balance"`
				}).Balance.Theirs.String())
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := tc.dst()
			err := decodeParams(json.RawMessage(tc.raw), dst)
			if tc.field == "" {
				require.NoError(t, err)
				if tc.check != nil {
					tc.check(t, dst)
				}
				return
			}
			je := classify(err)
			require.NotNil(t, je, "%v", err)
			require.EqualValues(t, -32602, je.Code)
			var data InvalidParamsData
			require.NoError(t, json.Unmarshal(*je.Data, &data))
			require.Equal(t, tc.field, data.Field)
			require.Contains(t, je.Message, tc.msg)
			require.NotContains(t, je.Message, "  ", "no blank where a field belongs")
		})
	}
}

// TestValidate: checks beyond one field's type.
func TestValidate(t *testing.T) {
	m := methodTable()
	for _, tc := range []struct{ method, raw, field string }{
		{"channel_send", `{"channelId":"0x1111111111111111111111111111111111111111111111111111111111111111","amount":"0"}`, "amount"},
		{"channel_open", `{"peer":"bob","balance":{"mine":"1","theirs":"0"},"challengeDuration":0}`, "challengeDuration"},
	} {
		_, err := m[tc.method].fn(&call{params: json.RawMessage(tc.raw)})
		je := classify(err)
		require.NotNil(t, je, tc.method)
		require.Contains(t, string(*je.Data), `"field":"`+tc.field+`"`, tc.method)
	}
}
