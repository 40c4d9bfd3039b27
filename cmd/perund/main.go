// Command perund is a multi-user Perun state-channel node with a JSON-RPC
// 2.0 WebSocket API.
//
//	perund dev                      embedded chain, demo users alice and bob, web wallet
//	perund run --config FILE        a node per configuration
//	perund keys new|import|list     manage the keystore
//	perund contracts deploy         deploy the Perun contracts on a chain
//	perund call METHOD [params]     call the API of a running node (package cli)
//	perund watch TOPIC...           print a session's notifications
//	perund completion bash          a bash completion script
//	perund version
package main

import (
	"fmt"
	"os"

	"github.com/perund/perund/cmd/perund/internal/cli"
	"github.com/perund/perund/cmd/perund/internal/quiet"
)

// version is set at build time with -ldflags "-X main.version=..." (make
// release); the commit and the modules' versions come from the build's own
// record (version.go).
var version = "0.1.0-dev"

func main() {
	quiet.Restore()
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	if cli.IsCommand(os.Args[1]) {
		os.Exit(cli.Main(os.Args[1:], secret))
	}
	// The client's variables (PERUND_SESSION, …) are no configuration keys.
	for _, k := range cli.EnvVars() {
		os.Unsetenv(k)
	}
	var err error
	switch os.Args[1] {
	case "dev":
		err = runDev(os.Args[2:])
	case "run":
		err = runNode(os.Args[2:])
	case "keys":
		err = runKeys(os.Args[2:])
	case "contracts":
		err = runContracts(os.Args[2:], os.Stdout, os.Stderr)
	case "version", "--version":
		printVersion()
	case "help", "-h", "--help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "perund: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "perund:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  perund dev [--data-dir DIR] [--listen HOST:PORT] [--set key=value]...
  perund run --config FILE [--set key=value]...
  perund keys new|import|list [--keystore DIR] [--password-file FILE]
  perund contracts deploy --config FILE [--token SYMBOL=ADDRESS[:DECIMALS]]... [--max-fee-gwei N] [--tip-gwei N]
  perund call [-url URL] [-token T] [-session ID:TOKEN | -account ADDR] METHOD [key=value ... | JSON]
  perund watch [-url URL] [-token T] [-session ID:TOKEN | -account ADDR] TOPIC...
  perund completion bash
  perund version

call, watch and completion explain themselves with -h.
`)
}
