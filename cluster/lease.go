// Package cluster lets two perund processes on one PostgreSQL database
// run as active and standby. The active one holds a lease: a row of the
// store's lease table with the holder's id, an epoch and an expiry set by
// the database's clock. It renews the row every third of the row's
// lifetime (three quarters of the lease timeout); a standby polls the row
// and takes it once it has expired, raising the epoch by one, within four
// fifths of the lease timeout after the active process's last renewal.
//
// Fencing keeps a process that lost the lease (paused, cut off from the
// database) from acting: the lease's Check refuses once the process's own
// monotonic deadline has passed (the time it sent its last successful
// renewal plus the timeout less a margin, which is before the database
// lets a standby take over), and perund passes every signature through
// it; the store's writes check the epoch in their own transaction
// (store.PostgresOptions.Epoch); and a process that sees its lease lost
// or expired stops serving (Lost).
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/perund/perund/store"
)

// DefaultLeaseTimeout is cluster.leaseTimeout's default.
const DefaultLeaseTimeout = 10 * time.Second

var (
	// ErrExpired is the Check error once the lease's local deadline has
	// passed: the process may no longer sign.
	ErrExpired = errors.New("cluster lease expired: this process may no longer act")
	// ErrLost is wrapped by Err when the lease was taken by another
	// process or could not be renewed in time.
	ErrLost = errors.New("cluster lease lost")

	errReleased = errors.New("cluster lease released")
)

// Options configure a Lease.
type Options struct {
	// URL is the PostgreSQL database of the store (store.url).
	URL string
	// ID names this process in the lease row; empty: host name, process
	// id and a random suffix.
	ID string
	// Timeout bounds the time from the active process's last renewal (its
	// death, at worst) until a standby holds the lease
	// (cluster.leaseTimeout); zero: DefaultLeaseTimeout. The lease row
	// lives three quarters of it from a renewal, and a standby looks at
	// the row every twentieth of it, so that a standby has taken the lease
	// within four fifths of Timeout and has the rest to restore and serve.
	Timeout time.Duration
	// Margin is how long before the database's expiry the process stops
	// signing; zero: a fifth of the row's lifetime.
	Margin time.Duration
	// Poll is how often a standby looks at the lease; zero: a twentieth
	// of Timeout.
	Poll time.Duration
	// Logger gets the lease's transitions; nil: none.
	Logger *slog.Logger
}

// Lease is this process's side of the cluster lease. Its methods are safe
// for concurrent use.
type Lease struct {
	pool *pgxpool.Pool
	id   string
	// timeout is Options.Timeout; ttl the lease row's lifetime from a
	// renewal.
	timeout time.Duration
	ttl     time.Duration
	margin  time.Duration
	poll    time.Duration
	log     *slog.Logger

	mu       sync.Mutex
	epoch    int64
	deadline time.Time // local monotonic deadline; zero: not held
	err      error     // why the lease was lost
	lost     chan struct{}

	// The renewal loop, started by Acquire: Close cancels and waits.
	cancel context.CancelFunc
	done   chan struct{}
}

// Open connects to the database, creates or migrates the store's schema
// (which holds the lease table) and returns the lease, not yet held.
func Open(ctx context.Context, o Options) (*Lease, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultLeaseTimeout
	}
	life := o.Timeout * 3 / 4
	if o.Margin <= 0 {
		o.Margin = life / 5
	}
	if o.Poll <= 0 {
		o.Poll = o.Timeout / 20
	}
	if o.Margin >= life {
		return nil, fmt.Errorf("cluster lease: margin %v must be below the lease row's lifetime %v (three quarters of the timeout)", o.Margin, life)
	}
	if o.ID == "" {
		o.ID = defaultID()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := store.MigratePostgres(ctx, o.URL); err != nil {
		return nil, fmt.Errorf("cluster lease: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(o.URL)
	if err != nil {
		return nil, fmt.Errorf("cluster lease: %s is not a PostgreSQL URL", store.RedactURL(o.URL))
	}
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster lease: connect to %s: %w", store.RedactURL(o.URL), err)
	}
	return &Lease{pool: pool, id: o.ID, timeout: o.Timeout, ttl: life, margin: o.Margin, poll: o.Poll, log: o.Logger,
		lost: make(chan struct{})}, nil
}

// defaultID is the host name, the process id and a random suffix.
func defaultID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
}

// ID returns this process's name in the lease row.
func (l *Lease) ID() string { return l.id }

// Timeout returns the bound on a takeover (Options.Timeout).
func (l *Lease) Timeout() time.Duration { return l.timeout }

// micros is d in microseconds, for PostgreSQL's intervals.
func micros(d time.Duration) int64 { return d.Microseconds() }

// takeSQL takes the lease if nobody holds it or its expiry has passed by
// the database's clock, raising the epoch; it returns no row otherwise.
const takeSQL = `INSERT INTO lease (name, holder, epoch, expires)
	VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 microsecond')
	ON CONFLICT (name) DO UPDATE
		SET holder = EXCLUDED.holder, epoch = lease.epoch + 1, expires = EXCLUDED.expires
		WHERE lease.expires <= clock_timestamp()
	RETURNING epoch`

// fenceExclusiveSQL takes the fence lock alone (until the transaction
// ends) if the lease has expired: only then may the epoch change.
const fenceExclusiveSQL = `SELECT count(*) FROM
	(SELECT pg_advisory_xact_lock($2) FROM lease WHERE name = $1 AND expires <= clock_timestamp()) AS fence`

// renewSQL moves the expiry on while the lease is still this holder's at
// this epoch and has not expired; it returns no row otherwise.
const renewSQL = `UPDATE lease SET expires = clock_timestamp() + $4 * interval '1 microsecond'
	WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires > clock_timestamp()
	RETURNING epoch`

// TryAcquire takes the lease if it is free or expired. On success the
// lease is held (Check passes until its deadline) and renewed in the
// background until Close or until it is lost.
func (l *Lease) TryAcquire(ctx context.Context) (bool, error) {
	l.mu.Lock()
	held := !l.deadline.IsZero() || l.err != nil
	l.mu.Unlock()
	if held {
		return false, errors.New("cluster lease: already acquired once by this process")
	}
	ctx, cancel := context.WithTimeout(ctx, l.ttl/3)
	defer cancel()
	sent := time.Now()
	// One transaction: an expired lease is taken under the fence lock held
	// alone, so that the old holder's writes in flight commit first and
	// its later ones see the new epoch.
	var batch pgx.Batch
	batch.Queue(fenceExclusiveSQL, store.LeaseName, store.FenceLockID)
	batch.Queue(takeSQL, store.LeaseName, l.id, micros(l.ttl))
	res := l.pool.SendBatch(ctx, &batch)
	var epoch int64
	_, err := res.Exec()
	if err == nil {
		err = res.QueryRow().Scan(&epoch)
	}
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cluster lease: take: %w", err)
	}
	l.mu.Lock()
	l.epoch, l.deadline = epoch, sent.Add(l.ttl-l.margin)
	rctx, rcancel := context.WithCancel(context.Background())
	l.cancel, l.done = rcancel, make(chan struct{})
	l.mu.Unlock()
	l.log.Info("cluster lease taken: this process is active", "holder", l.id, "epoch", epoch, "leaseTimeout", l.ttl)
	go l.renewLoop(rctx)
	return true, nil
}

// Acquire waits until it takes the lease (polling every Options.Poll) or
// ctx ends, and returns the epoch.
func (l *Lease) Acquire(ctx context.Context) (int64, error) {
	logged := false
	for {
		ok, err := l.TryAcquire(ctx)
		if ok {
			return l.Epoch(), nil
		}
		if err != nil && ctx.Err() == nil {
			l.log.Warn("cluster lease: cannot look at the lease", "err", err)
		} else if err == nil && !logged {
			holder, epoch, _ := l.Holder(ctx)
			l.log.Info("cluster lease held by another process: standing by", "holder", holder, "epoch", epoch)
			logged = true
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("cluster lease: waiting for the lease: %w", ctx.Err())
		case <-time.After(l.poll):
		}
	}
}

// renewLoop renews the lease every third of the row's lifetime (a quarter
// of the lease timeout) until ctx ends,
// the database says it is not ours, or the local deadline passes without
// a renewal.
func (l *Lease) renewLoop(ctx context.Context) {
	defer close(l.done)
	every := l.ttl / 3
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		l.mu.Lock()
		deadline := l.deadline
		l.mu.Unlock()
		dl := time.NewTimer(time.Until(deadline))
		select {
		case <-ctx.Done():
			dl.Stop()
			return
		case <-dl.C:
			l.lose(fmt.Errorf("%w: not renewed before its deadline", ErrLost))
			return
		case <-t.C:
			dl.Stop()
		}
		// After a pause (SIGSTOP) the timer fires late: the deadline
		// counts first.
		if !time.Now().Before(deadline) {
			l.lose(fmt.Errorf("%w: not renewed before its deadline", ErrLost))
			return
		}
		if err := l.renew(ctx); err != nil {
			if errors.Is(err, ErrLost) {
				l.lose(err)
				return
			}
			l.log.Warn("cluster lease: renewal failed, retrying", "err", err)
			t.Reset(min(every/4, time.Second))
			continue
		}
		t.Reset(every)
	}
}

// renew moves the expiry on once; ErrLost when the lease is not ours.
func (l *Lease) renew(ctx context.Context) error {
	l.mu.Lock()
	epoch := l.epoch
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, l.ttl/3)
	defer cancel()
	sent := time.Now()
	var got int64
	err := l.pool.QueryRow(ctx, renewSQL, store.LeaseName, l.id, epoch, micros(l.ttl)).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		holder, e, herr := l.Holder(ctx)
		if herr != nil {
			return fmt.Errorf("%w: expired or taken over", ErrLost)
		}
		return fmt.Errorf("%w: held by %s at epoch %d, ours was %d (or it expired)", ErrLost, holder, e, epoch)
	}
	if err != nil {
		return fmt.Errorf("cluster lease: renew: %w", err)
	}
	l.mu.Lock()
	if l.err == nil {
		l.deadline = sent.Add(l.ttl - l.margin)
	}
	l.mu.Unlock()
	return nil
}

// lose records why the lease is gone and closes Lost.
func (l *Lease) lose(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	l.err = err
	l.deadline = time.Time{}
	close(l.lost)
	l.log.Error("cluster lease lost: this process stops serving", "holder", l.id, "epoch", l.epoch, "err", err)
}

// Check is the signing gate: nil while the lease is held and its local
// deadline has not passed, else an error wrapping ErrExpired.
func (l *Lease) Check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return fmt.Errorf("%w (%v)", ErrExpired, l.err)
	}
	if l.deadline.IsZero() {
		return fmt.Errorf("%w: the lease is not held", ErrExpired)
	}
	if !time.Now().Before(l.deadline) {
		return fmt.Errorf("%w: its deadline passed %v ago", ErrExpired, time.Since(l.deadline).Round(time.Millisecond))
	}
	return nil
}

// Epoch returns the epoch this process holds (0 before Acquire).
func (l *Lease) Epoch() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch
}

// Lost is closed once the lease is lost (Err says why).
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err returns why the lease was lost, or nil.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Holder reads the lease row: its holder and epoch ("" and 0 if there is
// none).
func (l *Lease) Holder(ctx context.Context) (string, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.ttl/3)
	defer cancel()
	var holder string
	var epoch int64
	err := l.pool.QueryRow(ctx, `SELECT holder, epoch FROM lease WHERE name = $1`, store.LeaseName).Scan(&holder, &epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("cluster lease: read: %w", err)
	}
	return holder, epoch, nil
}

// Release ends the renewals and, if the lease is still ours, lets it
// expire at once, so that a standby takes over without waiting for the
// timeout (a graceful stop). Check fails afterwards.
func (l *Lease) Release(ctx context.Context) error {
	l.stopRenewing()
	l.mu.Lock()
	epoch, held := l.epoch, l.err == nil && !l.deadline.IsZero()
	l.deadline = time.Time{}
	if l.err == nil {
		l.err = errReleased // Check fails; Lost stays open: no loss
	}
	l.mu.Unlock()
	if !held {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.ttl/3)
	defer cancel()
	if _, err := l.pool.Exec(ctx, `UPDATE lease SET expires = clock_timestamp()
		WHERE name = $1 AND holder = $2 AND epoch = $3`, store.LeaseName, l.id, epoch); err != nil {
		return fmt.Errorf("cluster lease: release: %w", err)
	}
	l.log.Info("cluster lease released", "holder", l.id, "epoch", epoch)
	return nil
}

// stopRenewing cancels the renewal loop and waits for it.
func (l *Lease) stopRenewing() {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Close stops renewing (without releasing: the lease expires by itself)
// and closes the connections.
func (l *Lease) Close() {
	l.stopRenewing()
	l.pool.Close()
}
