package rpc

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecodeParams: any params value is either decoded or rejected with a
// -32602 error naming a field; nothing panics.
func FuzzDecodeParams(f *testing.F) {
	for _, s := range []string{`{"channelId":"0x00","amount":"1"}`, `[{"amount":"5"}]`, `[]`, `{}`, `[1,2]`,
		`{"amount":5}`, `{"memo":"x"}`, `{"":""}`, `{"balance":{"":1}}`, `[[[[[]]]]]`, `{"amount":"-1"}`, `"x"`, ``, `nul`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var p transferParams
		err := decodeParams(json.RawMessage(raw), &p)
		if err != nil {
			je := toError(err, nil, "fuzz")
			var data InvalidParamsData
			if je.Code != -32602 || je.Data == nil || json.Unmarshal(*je.Data, &data) != nil || data.Field == "" {
				t.Fatalf("want -32602 with a field, got %+v", je)
			}
			return
		}
		if p.Amount.Sign() < 0 {
			t.Fatalf("negative amount %s accepted", p.Amount.String())
		}
		if p.ChannelID != "" && !hashRE.MatchString(string(p.ChannelID)) {
			t.Fatalf("channel id %q accepted", p.ChannelID)
		}
	})
}

// FuzzValidID: ids are accepted exactly when they are a string, a number
// (of any size: 1e400 fits no float64) or null.
func FuzzValidID(f *testing.F) {
	for _, s := range []string{`1`, `"a"`, `null`, `-1.5e3`, `{}`, `[]`, `true`, `1 2`, `1e400`, `-0`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ok := validID(raw)
		var v any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if !json.Valid(raw) || dec.Decode(&v) != nil {
			if ok {
				t.Fatalf("invalid JSON %q accepted as id", raw)
			}
			return
		}
		switch v.(type) {
		case nil, string, json.Number:
			if !ok {
				t.Fatalf("id %q rejected", raw)
			}
		default:
			if ok {
				t.Fatalf("id %q accepted", raw)
			}
		}
	})
}
