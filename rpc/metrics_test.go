package rpc_test

import (
	"bufio"
	"context"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/metrics"
	"github.com/perund/perund/node"
)

// scrape reads /metrics (with the node token as a query parameter) and
// returns each sample by its name and labels as the text format writes them.
func scrape(t *testing.T, base, token string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics?token="+token, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return out
}

// TestMetrics: after a flow (a channel opened, three payments, one refused
// for funds, one call with bad params), /metrics shows each counter moved
// by exactly that much, the node's gauges read its state, and the endpoint
// wants the node token.
func TestMetrics(t *testing.T) {
	t.Parallel()
	const token = "metrics-test-token"
	m := metrics.New()
	f := newFixtureWith(t, map[string]any{"rpc.authToken": token}, func(o *node.Options) { o.Metrics = m })
	base := "http://" + strings.TrimSuffix(strings.TrimPrefix(f.url, "ws://"), "/rpc")
	url := f.url + "?token=" + token
	a, b := dial(t, url), dial(t, url)
	a.ok("session_open", map[string]any{"account": f.alice.Hex(), "password": "alice"}, nil)
	b.ok("session_open", map[string]any{"account": f.bob.Hex(), "password": "bob"}, nil)

	before := scrape(t, base, token)
	ch := openChannel(t, a, b, eth(1), big.NewInt(0))
	for range 3 {
		a.ok("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "1000"}, nil)
	}
	a.fail("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": eth(2).String()}, 1007)
	a.fail("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "-1"}, -32602)
	var sub string
	a.ok("perun_subscribe", []string{"channels"}, &sub)
	got := scrape(t, base, token)

	moved := func(sample string) float64 { return got[sample] - before[sample] }
	for _, tc := range []struct {
		sample string
		want   float64
	}{
		{`perund_payments_total{asset="ETH",result="ok"}`, 3},
		{`perund_payments_total{asset="ETH",result="insufficient_funds"}`, 1},
		{`perund_payment_duration_seconds_count`, 3},
		{`perund_rpc_calls_total{code="0",method="channel_send"}`, 3},
		{`perund_rpc_calls_total{code="1007",method="channel_send"}`, 1},
		{`perund_rpc_calls_total{code="-32602",method="channel_send"}`, 1},
		{`perund_rpc_calls_total{code="0",method="channel_open"}`, 1},
		{`perund_rpc_call_duration_seconds_count{method="channel_send"}`, 5},
		{`perund_proposals_total{outcome="accepted"}`, 1},
		{`perund_updates_total{kind="payment",outcome="accepted"}`, 3},
		{`perund_chain_transactions_total{purpose="deposit",result="mined"}`, 1},
	} {
		require.Equal(t, tc.want, moved(tc.sample), tc.sample)
	}
	require.Positive(t, moved(`perund_chain_gas_used_total{purpose="deposit"}`), "gas of the deposit")
	require.Equal(t, 2.0, got[`perund_sessions_open`])
	require.Equal(t, 2.0, got[`perund_channels{asset="ETH",state="open"}`], "the channel, from each side")
	require.Equal(t, 2.0, got[`perund_rpc_connections`])
	require.Equal(t, 1.0, got[`perund_rpc_subscriptions`])
	require.Contains(t, got, `perund_chain_head_age_seconds`)
	require.Less(t, got[`perund_chain_head_age_seconds`], 60.0)
	require.Contains(t, got, `go_goroutines`, "the runtime's metrics")

	// The endpoint wants the token.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}
