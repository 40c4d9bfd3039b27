package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// directives splits a Content-Security-Policy into its directives.
func directives(t *testing.T, csp string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		name, value, _ := strings.Cut(d, " ")
		_, dup := out[name]
		require.False(t, dup, "directive %s twice in %q", name, csp)
		out[name] = value
	}
	return out
}

// TestSecurityHeaders: every response of the wallet, files and errors
// alike, forbids framing, sends no referrer and allows connections only to
// the node itself, by http(s) and by ws(s) on the Host it was asked for.
func TestSecurityHeaders(t *testing.T) {
	h := Handler()
	tests := []struct {
		path, host string
		status     int
		connect    string
	}{
		{"/", "127.0.0.1:8400", http.StatusOK, "'self' ws://127.0.0.1:8400 wss://127.0.0.1:8400"},
		{"/index.html", "127.0.0.1:8400", http.StatusMovedPermanently, "'self' ws://127.0.0.1:8400 wss://127.0.0.1:8400"},
		{"/app.js", "wallet.example", http.StatusOK, "'self' ws://wallet.example wss://wallet.example"},
		{"/style.css", "Wallet.Example:8443", http.StatusOK, "'self' ws://Wallet.Example:8443 wss://Wallet.Example:8443"},
		{"/favicon.svg", "localhost:8400", http.StatusOK, "'self' ws://localhost:8400 wss://localhost:8400"},
		{"/client/perund.js", "127.0.0.1:8400", http.StatusOK, "'self' ws://127.0.0.1:8400 wss://127.0.0.1:8400"},
		{"/missing", "127.0.0.1:8400", http.StatusNotFound, "'self' ws://127.0.0.1:8400 wss://127.0.0.1:8400"},
		// Hosts a CSP source cannot name (or that could smuggle in a
		// directive) get 'self' only.
		{"/", "[::1]:8400", http.StatusOK, "'self'"},
		{"/", "evil.example; script-src *", http.StatusOK, "'self'"},
		{"/", "", http.StatusOK, "'self'"},
	}
	for _, tc := range tests {
		t.Run(tc.path+" "+tc.host, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.path, nil)
			r.Host = tc.host
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.Equal(t, tc.status, w.Code)
			hd := w.Result().Header
			require.Equal(t, "DENY", hd.Get("X-Frame-Options"))
			require.Equal(t, "no-referrer", hd.Get("Referrer-Policy"))
			require.Equal(t, "nosniff", hd.Get("X-Content-Type-Options"))
			require.Len(t, hd.Values("Content-Security-Policy"), 1)
			d := directives(t, hd.Get("Content-Security-Policy"))
			require.Equal(t, "'self'", d["default-src"])
			require.Equal(t, "'none'", d["frame-ancestors"])
			require.Equal(t, tc.connect, d["connect-src"])
			for name, v := range d {
				require.NotContains(t, v, "unsafe", "%s allows unsafe sources", name)
				require.NotContains(t, v, "*", "%s allows wildcards", name)
			}
		})
	}
}

// TestWalletWorksUnderCSP: the wallet has no inline scripts, styles, event
// handlers or javascript: links (the CSP blocks them), and everything its
// page refers to is served by the node.
func TestWalletWorksUnderCSP(t *testing.T) {
	static, err := fs.Sub(files, "static")
	require.NoError(t, err)
	inline := []struct {
		what string
		re   *regexp.Regexp
	}{
		{"inline script", regexp.MustCompile(`(?is)<script\b[^>]*>\s*[^<\s]`)},
		{"style element", regexp.MustCompile(`(?i)<style\b`)},
		{"style attribute", regexp.MustCompile(`(?i)<[^>]+\sstyle\s*=`)},
		{"event handler attribute", regexp.MustCompile(`(?i)<[^>]+\son[a-z]+\s*=`)},
		{"javascript: URL", regexp.MustCompile(`(?i)javascript:`)},
		{"data: URL", regexp.MustCompile(`(?i)(?:src|href)\s*=\s*["']?data:`)},
	}
	pages, err := fs.Glob(static, "*.html")
	require.NoError(t, err)
	require.NotEmpty(t, pages)
	h := Handler()
	scriptTag := regexp.MustCompile(`(?i)<script\b[^>]*>`)
	ref := regexp.MustCompile(`(?i)\s(?:src|href)="([^"]+)"`)
	for _, p := range pages {
		b, err := fs.ReadFile(static, p)
		require.NoError(t, err)
		page := string(b)
		for _, c := range inline {
			require.Falsef(t, c.re.MatchString(page), "%s: %s: %q", p, c.what, c.re.FindString(page))
		}
		for _, tag := range scriptTag.FindAllString(page, -1) {
			require.Regexp(t, `(?i)\ssrc=`, tag, "%s: a script without src", p)
		}
		for _, m := range ref.FindAllStringSubmatch(page, -1) {
			u := m[1]
			if strings.Contains(u, "://") {
				continue // a link the user follows, not loaded by the page
			}
			r := httptest.NewRequest(http.MethodGet, u, nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.Equal(t, http.StatusOK, w.Code, "%s refers to %s", p, u)
			_, _ = io.Copy(io.Discard, w.Result().Body)
		}
	}
	js, err := fs.ReadFile(static, "app.js")
	require.NoError(t, err)
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", ".style.cssText", "'style'"} {
		require.NotContains(t, string(js), bad, "app.js")
	}
}
