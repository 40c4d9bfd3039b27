package cli

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDocumentCallTimeout(t *testing.T) {
	t.Parallel()
	var d document
	require.NoError(t, json.Unmarshal([]byte(`{"methods":[
		{"name":"node_info","x-timeout":{"class":"quick","seconds":30}},
		{"name":"channel_send","x-timeout":{"class":"peer","seconds":1800}},
		{"name":"half","x-timeout":{"class":"quick","seconds":0.5}},
		{"name":"old"},
		{"name":"nulled","x-timeout":null},
		{"name":"noSeconds","x-timeout":{"class":"quick"}},
		{"name":"negative","x-timeout":{"class":"quick","seconds":-1}},
		{"name":"text","x-timeout":"30s"}]}`), &d))
	for method, want := range map[string]time.Duration{
		"node_info":    35 * time.Second,
		"channel_send": 30*time.Minute + 5*time.Second,
		"half":         5500 * time.Millisecond,
		"old":          30 * time.Minute,
		"nulled":       30 * time.Minute,
		"missing":      StepTimeout,
	} {
		got, err := d.callTimeout(method)
		require.NoError(t, err, method)
		require.Equal(t, want, got, method)
	}
	for _, method := range []string{"noSeconds", "negative", "text"} {
		_, err := d.callTimeout(method)
		require.ErrorContains(t, err, "the node's rpc_discover gives "+method+" the x-timeout", method)
	}
}
