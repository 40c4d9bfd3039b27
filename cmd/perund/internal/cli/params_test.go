package cli

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // JSON; "" for no params
		err  string // part of the error; "" for none
	}{
		{name: "none", args: nil, want: ""},
		{name: "json object as is", args: []string{`{"peer":"bob","balance":{"mine":"5","theirs":"0"}}`},
			want: `{"peer":"bob","balance":{"mine":"5","theirs":"0"}}`},
		{name: "json array as is", args: []string{`["channels"]`}, want: `["channels"]`},
		{name: "json with blanks", args: []string{" {\"a\": 1}\n"}, want: `{"a":1}`},
		{name: "bad json", args: []string{`{"a":`}, err: "not valid JSON"},
		{name: "json and more", args: []string{`{"a":"b"}`, "c=d"}, err: "must be the only argument"},
		{name: "string", args: []string{"peer=bob"}, want: `{"peer":"bob"}`},
		{name: "number stays a string", args: []string{"amount=1000"}, want: `{"amount":"1000"}`},
		{name: "hex stays a string", args: []string{"channelId=0x0a"}, want: `{"channelId":"0x0a"}`},
		{name: "booleans and null", args: []string{"accept=true", "manualAccept=false", "reason=null"},
			want: `{"accept":true,"manualAccept":false,"reason":null}`},
		{name: "True is a string", args: []string{"accept=True"}, want: `{"accept":"True"}`},
		{name: "empty value", args: []string{"reason="}, want: `{"reason":""}`},
		{name: "value with =", args: []string{"reason=a=b"}, want: `{"reason":"a=b"}`},
		{name: "value with blanks", args: []string{"reason=too much"}, want: `{"reason":"too much"}`},
		{name: "quoted string", args: []string{`reason="true"`}, want: `{"reason":"true"}`},
		{name: "object value", args: []string{`balance={"mine":"1","theirs":"0"}`}, want: `{"balance":{"mine":"1","theirs":"0"}}`},
		{name: "array value", args: []string{`ids=["a","b"]`}, want: `{"ids":["a","b"]}`},
		{name: "bad json value", args: []string{`balance={mine}`}, err: "must be JSON"},
		{name: "raw json number", args: []string{"challengeDuration:=60"}, want: `{"challengeDuration":60}`},
		{name: "raw json string", args: []string{`peer:="bob"`}, want: `{"peer":"bob"}`},
		{name: "raw json invalid", args: []string{"peer:=bob"}, err: "must be JSON"},
		{name: "dotted keys nest", args: []string{"balance.mine=5", "balance.theirs=0"},
			want: `{"balance":{"mine":"5","theirs":"0"}}`},
		{name: "deep nesting", args: []string{"a.b.c=1", "a.b.d:=2", "a.e=x"}, want: `{"a":{"b":{"c":"1","d":2},"e":"x"}}`},
		{name: "the wscat channel_open", args: []string{"peer=bob", "balance.mine=10000000000000000000", "balance.theirs=10000000000000000000"},
			want: `{"peer":"bob","balance":{"mine":"10000000000000000000","theirs":"10000000000000000000"}}`},
		{name: "duplicate", args: []string{"a=1", "a=2"}, err: "given twice"},
		{name: "value then object", args: []string{"a=1", "a.b=2"}, err: "already set to a value"},
		{name: "object then value", args: []string{"a.b=1", "a=2"}, err: "already an object"},
		{name: "raw object then dotted", args: []string{`a:={"b":1}`, "a.c=2"}, err: "already set to a value"},
		{name: "empty key part", args: []string{"a..b=1"}, err: "empty part"},
		{name: "leading dot", args: []string{".a=1"}, err: "empty part"},
		{name: "no =", args: []string{"peer"}, err: "want key=value"},
		{name: "no key", args: []string{"=x"}, err: "want key=value"},
		{name: "only :=", args: []string{":=1"}, err: "want key=value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseParams(tc.args)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			if tc.want == "" {
				require.Nil(t, got)
				return
			}
			require.True(t, json.Valid(got), "%s", got)
			require.JSONEq(t, tc.want, string(got))
		})
	}
}

func TestNormalizeURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want, err string }{
		{in: DefaultURL, want: DefaultURL},
		{in: "ws://127.0.0.1:8400", want: "ws://127.0.0.1:8400/rpc"},
		{in: "127.0.0.1:9000", want: "ws://127.0.0.1:9000/rpc"},
		{in: "http://node:8400/", want: "ws://node:8400/rpc"},
		{in: "https://node.example/rpc", want: "wss://node.example/rpc"},
		{in: "wss://node.example/api/rpc", want: "wss://node.example/api/rpc"},
		{in: " ws://h:1/rpc ", want: "ws://h:1/rpc"},
		{in: "ftp://h/rpc", err: "want ws://"},
		{in: "ws:///rpc", err: "no host"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := normalizeURL(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseSession(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, id, token string }{
		{in: "0xab:0xcd", id: "0xab", token: "0xcd"},
		{in: " 0xab:0xcd\n", id: "0xab", token: "0xcd"},
		{in: "0xab"},
		{in: ":0xcd"},
		{in: "0xab:"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			id, token, err := parseSession(tc.in)
			if tc.id == "" {
				require.ErrorContains(t, err, "want SESSIONID:TOKEN")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.id, id)
			require.Equal(t, tc.token, token)
		})
	}
}
