// Package web holds the browser wallet and the JavaScript client, embedded
// in the binary: the wallet is served at /, the client at /client/.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static client/perund.js client/perund.d.ts client/package.json
var files embed.FS

// Handler serves the wallet's files at / and the JS client at /client/.
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
	mux.Handle("/client/", noCache(http.StripPrefix("/client/", http.FileServer(http.FS(client)))))
	mux.Handle("/", noCache(http.FileServer(http.FS(static))))
	return mux
}

// noCache makes browsers revalidate: the files change with the binary.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}
