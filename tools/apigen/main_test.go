package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/rpc"
)

// TestGeneratedFilesAreCurrent: docs/api.md, web/client/api.js and
// web/client/perund.d.ts are what the document of this build generates.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	t.Parallel()
	d, err := load(rpc.Document())
	require.NoError(t, err)
	for path, want := range outputs(d) {
		got, err := os.ReadFile(filepath.Join("..", "..", filepath.FromSlash(path)))
		require.NoError(t, err, path)
		require.True(t, string(got) == want, "%s is stale: run go run ./tools/apigen", path)
	}
}

// TestGenerated: what the generators make of the document.
func TestGenerated(t *testing.T) {
	t.Parallel()
	d, err := load(rpc.Document())
	require.NoError(t, err)
	js, ts, md := javascript(d), typescript(d), markdown(d)
	for _, tc := range []struct{ name, text, want string }{
		{"a wrapper with positional required params", js, "channelSend(channelId, amount) { return this.call('channel_send', { channelId, amount }); }"},
		{"optional params as options", js, "sessionOpen(account, password, opts = {}) { return this.call('session_open', { account, password, ...opts }); }"},
		{"no params", js, "nodeInfo() { return this.call('node_info'); }"},
		{"the timeout of a call that waits for the peer", js, "channel_send: Object.freeze({ class: 'peer', timeout: 1800000, session: true }),"},
		{"error codes", js, "TIMED_OUT: 1006,"},
		{"typed result", ts, "channelSend(channelId: string, amount: string): Promise<Channel>;"},
		{"a result or {}", ts, "proposalRespond(proposalId: string, accept: boolean, opts?: { reason?: string }): Promise<Channel | Record<string, never>>;"},
		{"enums", ts, "state: 'opening' | 'open' | 'closing' | 'registered' | 'closed';"},
		{"topics", ts, "channels: Channel;"},
		{"params table", md, "| `amount` | string `^[0-9]{1,78}$` | yes |"},
		{"errors table", md, "| 1007 | InsufficientFunds |"},
	} {
		require.True(t, strings.Contains(tc.text, tc.want), "%s: %q missing", tc.name, tc.want)
	}
}
