package main

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestVersionText: the version names perund's version, the commit and the
// versions of the Perun and Ethereum modules, from the build's record.
func TestVersionText(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8",
		Deps: []*debug.Module{
			{Path: "perun.network/go-perun", Version: "v0.15.0"},
			{Path: "github.com/perun-network/perun-eth-backend", Version: "v0.6.0"},
			{Path: "github.com/ethereum/go-ethereum", Version: "v1.17.10"},
			{Path: "github.com/other/module", Version: "v9.9.9"},
		},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}},
	}
	got := versionText("1.2.3", bi)
	for _, want := range []string{"perund 1.2.3\n", "commit abc123 (with uncommitted changes)\n", "go-perun v0.15.0\n",
		"perun-eth-backend v0.6.0\n", "go-ethereum v1.17.10\n", "go1.26.8 "} {
		require.Contains(t, got, want)
	}
	require.NotContains(t, got, "other/module")
	require.Equal(t, "perund 1.2.3\n", versionText("1.2.3", nil))

	// This test binary's own record names the pinned go-perun.
	real, ok := debug.ReadBuildInfo()
	require.True(t, ok)
	require.True(t, strings.Contains(versionText("x", real), "go-perun v0.15.0"), versionText("x", real))
}
