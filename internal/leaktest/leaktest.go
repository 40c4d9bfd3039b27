// Package leaktest holds the leak checks of perund's tests: the
// goroutine-leak check that test packages run after their tests (goleak,
// ignoring only the library goroutines that perund cannot end, each with
// the reason), and a count of listening sockets for ports left open.
package leaktest

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Ignores are the goroutines of libraries that outlive every test.
func Ignores() []goleak.Option {
	return []goleak.Option{
		// The keystore that perun-eth-backend's wallet/test package creates
		// in a package variable (goperun-notes §11) watches its directory for
		// ever: go-ethereum's keystore watcher and the fsnotify reader under
		// it; the keystore has no Close.
		goleak.IgnoreTopFunction("github.com/ethereum/go-ethereum/accounts/keystore.(*watcher).loop"),
		goleak.IgnoreAnyFunction("github.com/fsnotify/fsnotify.(*inotify).readEvents"),
		// go-ethereum's transaction sender cache (core.senderCacher), started
		// once per process by the first blockchain (the embedded chain's) and
		// never stopped.
		goleak.IgnoreTopFunction("github.com/ethereum/go-ethereum/core.(*txSenderCacher).cache"),
		// perun-eth-backend v0.6.0's ERC20Depositor (erc20_depositor.go:141)
		// watches Approval events for each deposit and never unsubscribes.
		// (A leaked subscription of perund's own still shows: its watcher
		// goroutine above the backend's is not ignored.)
		goleak.IgnoreTopFunction("github.com/perun-network/perun-eth-backend/bindings/peruntoken.(*PeruntokenFilterer).WatchApproval.func1"),
		// go-perun's Channel.ensureRegistered (client/adjudicate.go) returns
		// when its context ends but leaves its awaitRegistered goroutine
		// blocked for ever on an unbuffered channel: a session that closes
		// while a dispute waits out its challenge period leaves one behind.
		goleak.IgnoreTopFunction("perun.network/go-perun/client.(*Channel).ensureRegistered.func1"),
		// go-ethereum's log subscription (eth/filters FilterAPI.Logs) ends
		// by uninstalling its filter from the filter system's event loop,
		// asynchronously after the subscriber went away; when the embedded
		// chain closes first, the loop is gone and the goroutine waits on it
		// for ever. Only a goroutine already unsubscribing is ignored: a
		// subscription still open stays in Logs' own loop and still shows.
		goleak.IgnoreAnyFunction("github.com/ethereum/go-ethereum/eth/filters.(*Subscription).Unsubscribe"),
		// goleveldb's mpoolDrain ends up to a second after its database
		// closed, longer than goleak retries. A database left open is still
		// caught: its compaction goroutines stay.
		goleak.IgnoreTopFunction("github.com/syndtr/goleveldb/leveldb.(*DB).mpoolDrain"),
	}
}

// VerifyTestMain runs m's tests, then the cleanups (which stop what the
// package's tests share, such as a database server), and fails the tests
// if goroutines other than the ignored ones are left.
func VerifyTestMain(m *testing.M, cleanups ...func()) {
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	if code == 0 {
		if err := goleak.Find(Ignores()...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: Errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
