// Package web holds the browser wallet and the JavaScript client, embedded
// in the binary: the wallet is served at /, the client at /client/.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"regexp"
)

//go:embed static client/perund.js client/api.js client/perund.d.ts client/package.json
var files embed.FS

// Handler serves the wallet's files at / and the JS client at /client/.
// Every response carries the headers of [SecurityHeaders].
func Handler() http.Handler {
	static, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	client, err := fs.Sub(files, "client")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/client/", http.StripPrefix("/client/", http.FileServer(http.FS(client))))
	mux.Handle("/", http.FileServer(http.FS(static)))
	return SecurityHeaders(noCache(mux))
}

// noCache makes browsers revalidate: the files change with the binary.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// SecurityHeaders sets on every response of h the wallet's
// Content-Security-Policy (see [ContentSecurityPolicy]) and forbids
// framing (X-Frame-Options: DENY), referrers (which could carry a node
// token given in the URL) and content-type sniffing.
func SecurityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", ContentSecurityPolicy(r.Host))
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// cspHost matches a host[:port] that a CSP source expression can name:
// a DNS name or IPv4 address (CSP has no syntax for IPv6 literals).
var cspHost = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(?::[0-9]{1,5})?$`)

// ContentSecurityPolicy is the wallet's policy for a page requested for
// host (the request's Host): everything from the node itself only, no
// inline code, no framing. CSP's 'self' does not cover WebSocket URLs in
// every browser, so connect-src also names ws://host and wss://host, the
// API's address as the wallet derives it from its own location; a host
// that a source expression cannot name gets 'self' alone.
func ContentSecurityPolicy(host string) string {
	connect := "'self'"
	if cspHost.MatchString(host) {
		connect += " ws://" + host + " wss://" + host
	}
	return "default-src 'self'; connect-src " + connect +
		"; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}
