package rpc

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/config"
	"github.com/perund/perund/web"
)

// TestHTTPSecurityHeaders: the API's HTTP answers allow nothing to load
// and cannot be framed; the wallet mounted at / keeps its own policy.
func TestHTTPSecurityHeaders(t *testing.T) {
	cfg, err := config.Load(config.Sources{Flags: map[string]any{"dataDir": t.TempDir(), "rpc.authToken": "s3cret"}})
	require.NoError(t, err)
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	withWeb := NewServer(nil, cfg.RPC, lg, web.Handler()).Handler()
	without := NewServer(nil, cfg.RPC, lg, nil).Handler()
	const host = "127.0.0.1:8400"
	tests := []struct {
		name    string
		h       http.Handler
		path    string
		header  http.Header
		status  int
		wantCSP string
	}{
		{"rpc without token", withWeb, "/rpc", nil, http.StatusUnauthorized, apiCSP},
		{"rpc without upgrade", withWeb, "/rpc?token=s3cret", nil, http.StatusBadRequest, apiCSP},
		{"rpc from a foreign origin", withWeb, "/rpc?token=s3cret", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"},
			"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Origin": {"https://evil.example"}},
			http.StatusForbidden, apiCSP},
		{"unknown path without wallet", without, "/", nil, http.StatusNotFound, apiCSP},
		{"wallet", withWeb, "/", nil, http.StatusOK, web.ContentSecurityPolicy(host)},
		{"wallet's not found", withWeb, "/nothing", nil, http.StatusNotFound, web.ContentSecurityPolicy(host)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.path, nil)
			r.Host = host
			for k, v := range tc.header {
				r.Header[k] = v
			}
			w := httptest.NewRecorder()
			tc.h.ServeHTTP(w, r)
			require.Equal(t, tc.status, w.Code)
			hd := w.Result().Header
			require.Equal(t, []string{tc.wantCSP}, hd.Values("Content-Security-Policy"))
			require.Equal(t, "DENY", hd.Get("X-Frame-Options"))
			require.Equal(t, "no-referrer", hd.Get("Referrer-Policy"))
			require.Equal(t, "nosniff", hd.Get("X-Content-Type-Options"))
		})
	}
}
