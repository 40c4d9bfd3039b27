package node

import (
	"fmt"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// Wrong-password policy: after freeAttempts consecutive failures an account
// is locked for firstLockout, doubling with every further failure up to
// maxLockout. A success clears the count.
const (
	freeAttempts = 3
	firstLockout = time.Second
	maxLockout   = 5 * time.Minute
)

// TooManyAttemptsError refuses a password check while the account is
// locked after wrong passwords.
type TooManyAttemptsError struct {
	Account    common.Address
	RetryAfter time.Duration
}

func (e *TooManyAttemptsError) Error() string {
	return fmt.Sprintf("too many wrong passwords for %s: try again in %d s", e.Account.Hex(), int64(e.RetryAfter.Seconds()+0.999))
}

// Unwrap makes the error an ErrUnauthorized.
func (e *TooManyAttemptsError) Unwrap() error { return ErrUnauthorized }

// passwordGuard rate-limits password checks per account. Checks of one
// account run one at a time so parallel guesses cannot pass the limit.
type passwordGuard struct {
	now func() time.Time

	mu       sync.Mutex
	accounts map[common.Address]*attempts
}

type attempts struct {
	check       sync.Mutex // held during one password check
	failures    int
	lockedUntil time.Time
}

func newPasswordGuard() *passwordGuard {
	return &passwordGuard{now: time.Now, accounts: map[common.Address]*attempts{}}
}

// check runs unlock for account unless the account is locked; unlock
// reports whether the password was wrong (wrong) besides any other error.
func (g *passwordGuard) check(account common.Address, unlock func() (wrong bool, err error)) error {
	g.mu.Lock()
	a, ok := g.accounts[account]
	if !ok {
		a = &attempts{}
		g.accounts[account] = a
	}
	g.mu.Unlock()

	a.check.Lock()
	defer a.check.Unlock()
	if wait := a.lockedUntil.Sub(g.now()); wait > 0 {
		return &TooManyAttemptsError{Account: account, RetryAfter: wait}
	}
	wrong, err := unlock()
	switch {
	case wrong:
		a.failures++
		if a.failures >= freeAttempts {
			lock := firstLockout << min(a.failures-freeAttempts, 20)
			a.lockedUntil = g.now().Add(min(lock, maxLockout))
		}
	case err == nil:
		a.failures, a.lockedUntil = 0, time.Time{}
	}
	return err
}
