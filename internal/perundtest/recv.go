package perundtest

import (
	"sync"
	"testing"
	"time"
)

// Recv is <-ch with a deadline: it returns the next value of ch (the zero
// value once ch is closed, as a receive does); the test fails (on the
// calling goroutine, which must be the test's) if nothing comes within d.
// what names the awaited value in the failure.
func Recv[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("%s: nothing within %s", what, d)
	}
	var zero T
	return zero
}

// Wait waits for wg; the test fails if it is not done within d.
func Wait(t testing.TB, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	Recv(t, done, d, what)
}

// Async runs fn in a goroutine and returns a channel that gets its error:
// the goroutine reports, the test goroutine asserts (with Recv), so that
// nothing calls require off the test goroutine.
func Async(fn func() error) <-chan error {
	res := make(chan error, 1)
	go func() { res <- fn() }()
	return res
}
