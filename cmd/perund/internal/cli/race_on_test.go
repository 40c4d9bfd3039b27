//go:build race

package cli

// raceBuild: the tests run under the race detector, so the perund binary
// they start is built with it too.
const raceBuild = true
