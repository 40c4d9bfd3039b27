//go:build race

package integration

// raceBuild: the tests run under the race detector, so the perund binary
// they start is built with it too: disputes, settling, the watchtower and
// the chain reconnect run under it.
const raceBuild = true
