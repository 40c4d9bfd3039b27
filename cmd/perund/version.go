package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// versionText describes the binary: perund's version (stamped by make
// release), the commit it was built from and the versions of go-perun, the
// Ethereum backend and go-ethereum, as the Go toolchain recorded them.
func versionText(v string, bi *debug.BuildInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "perund %s\n", v)
	if bi == nil {
		return b.String()
	}
	commit, modified := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if commit != "" {
		if modified {
			commit += " (with uncommitted changes)"
		}
		fmt.Fprintf(&b, "commit %s\n", commit)
	}
	// The modules that decide how perund signs, stores and settles channels.
	stack := []struct{ name, path string }{
		{"go-perun", "perun.network/go-perun"},
		{"perun-eth-backend", "github.com/perun-network/perun-eth-backend"},
		{"go-ethereum", "github.com/ethereum/go-ethereum"},
	}
	for _, m := range stack {
		for _, d := range bi.Deps {
			if d.Path == m.path {
				if d.Replace != nil {
					d = d.Replace
				}
				fmt.Fprintf(&b, "%s %s\n", m.name, d.Version)
			}
		}
	}
	fmt.Fprintf(&b, "%s %s/%s\n", bi.GoVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}

func printVersion() {
	bi, _ := debug.ReadBuildInfo()
	fmt.Print(versionText(version, bi))
}
