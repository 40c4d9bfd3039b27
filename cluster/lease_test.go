package cluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/cluster"
	"github.com/perund/perund/internal/leaktest"
	"github.com/perund/perund/internal/pgtest"
	"github.com/perund/perund/store"
)

// pg is the PostgreSQL cluster of the package's tests.
var pg = pgtest.NewCluster()

// TestMain stops the PostgreSQL cluster and fails the package when a
// goroutine (a renewal loop, a connection) is left once all tests ran.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m, pg.Stop) }

// ttl is the lease timeout of the tests: short, so that expiries pass
// quickly; the assertions wait for events, not for durations.
const ttl = 900 * time.Millisecond

func openLease(t *testing.T, url, id string) *cluster.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := cluster.Open(ctx, cluster.Options{URL: url, ID: id, Timeout: ttl})
	require.NoError(t, err)
	t.Cleanup(l.Close)
	return l
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Two holders on one database: one takes the lease, the other cannot
// while it is renewed; Check passes only for the holder. When the holder
// stops renewing (it died), the lease expires by the database's clock, the
// standby takes it with the next epoch, and the dead holder's Check fails
// (its local deadline passed before the database let the standby in).
func TestLeaseExpiryAndTakeover(t *testing.T) {
	url := pg.Database(t)
	a, b := openLease(t, url, "a"), openLease(t, url, "b")
	ctx := ctxT(t)

	require.Error(t, a.Check(), "a lease never taken does not let anyone sign")
	ok, err := a.TryAcquire(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, int64(1), a.Epoch())
	require.NoError(t, a.Check())

	// b cannot take it over while a renews, across several renewals.
	for range 3 {
		ok, err := b.TryAcquire(ctx)
		require.NoError(t, err)
		require.False(t, ok, "b took a lease a renews")
		time.Sleep(ttl / 2)
	}
	require.NoError(t, a.Check(), "a renewed its lease")
	require.ErrorIs(t, b.Check(), cluster.ErrExpired)
	holder, epoch, err := b.Holder(ctx)
	require.NoError(t, err)
	require.Equal(t, "a", holder)
	require.Equal(t, int64(1), epoch)

	// a dies: nothing renews. b waits for the expiry and takes over.
	a.Close()
	got, err := b.Acquire(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2), got, "a takeover raises the epoch")
	require.NoError(t, b.Check())
	require.ErrorIs(t, a.Check(), cluster.ErrExpired, "the old holder's deadline passed before the takeover")
}

// A holder whose lease was taken over while it could not renew (paused:
// here the row is expired behind its back) sees it lost at its next
// renewal: Lost closes and Check fails, and it does not renew the new
// holder's lease.
func TestLeaseLostToTakeover(t *testing.T) {
	url := pg.Database(t)
	a, b := openLease(t, url, "a"), openLease(t, url, "b")
	ctx := ctxT(t)
	ok, err := a.TryAcquire(ctx)
	require.NoError(t, err)
	require.True(t, ok)

	expireNow(t, url)
	ok, err = b.TryAcquire(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, int64(2), b.Epoch())

	select {
	case <-a.Lost():
	case <-time.After(time.Minute): // a hang guard only
		t.Fatal("a did not notice that its lease was taken")
	}
	require.ErrorIs(t, a.Err(), cluster.ErrLost)
	require.ErrorIs(t, a.Check(), cluster.ErrExpired)
	holder, epoch, err := a.Holder(ctx)
	require.NoError(t, err)
	require.Equal(t, "b", holder)
	require.Equal(t, int64(2), epoch)
	require.NoError(t, b.Check())
}

// A graceful stop releases the lease: the standby takes it at once.
func TestLeaseRelease(t *testing.T) {
	url := pg.Database(t)
	a, b := openLease(t, url, "a"), openLease(t, url, "b")
	ctx := ctxT(t)
	ok, err := a.TryAcquire(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, a.Release(ctx))
	require.Error(t, a.Check())
	select {
	case <-a.Lost():
		t.Fatal("a release is not a loss")
	default:
	}
	ok, err = b.TryAcquire(ctx)
	require.NoError(t, err)
	require.True(t, ok, "the released lease is free at once")
	require.Equal(t, int64(2), b.Epoch())
}

// expireNow sets the lease's expiry to the database's now, as if its
// holder had been paused past it.
func expireNow(t *testing.T, url string) {
	ctx := ctxT(t)
	c, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, `UPDATE lease SET expires = clock_timestamp()`)
	require.NoError(t, err)
}

// Epoch fencing: a store opened at the holder's epoch writes (channels and
// documents) while the lease is at that epoch; once another process took
// the lease, every kind of write of the old one fails with ErrFenced in
// its own transaction and writes nothing, while the new holder's store
// writes.
func TestFencedWrites(t *testing.T) {
	url := pg.Database(t)
	a, b := openLease(t, url, "a"), openLease(t, url, "b")
	ctx := ctxT(t)
	ok, err := a.TryAcquire(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	old, err := store.OpenPostgres(ctx, url, store.PostgresOptions{Epoch: a.Epoch()})
	require.NoError(t, err)
	defer old.Close()

	user := common.HexToAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
	writes := []struct {
		name  string
		write func(st *store.Postgres) error
	}{
		{"record", func(st *store.Postgres) error { return st.User(user).PutRecord("k", []byte("v")) }},
		{"document", func(st *store.Postgres) error { return st.Docs().Put(ctx, "x/doc", []byte("v")) }},
		{"document delete", func(st *store.Postgres) error { return st.Docs().Delete(ctx, "x/doc") }},
	}
	for _, w := range writes {
		require.NoError(t, w.write(old), "%s at the lease's epoch", w.name)
	}
	require.NoError(t, old.Docs().Put(ctx, "x/kept", []byte("old")))

	a.Close()
	_, err = b.Acquire(ctx)
	require.NoError(t, err)
	for _, w := range writes {
		err := w.write(old)
		require.ErrorIs(t, err, store.ErrFenced, "%s with a stale epoch", w.name)
	}
	require.ErrorIs(t, old.Docs().Put(ctx, "x/kept", []byte("stale")), store.ErrFenced)

	cur, err := store.OpenPostgres(ctx, url, store.PostgresOptions{Epoch: b.Epoch()})
	require.NoError(t, err)
	defer cur.Close()
	v, ok, err := cur.Docs().Get(ctx, "x/kept")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "old", string(v), "the fenced write wrote nothing")
	for _, w := range writes {
		require.NoError(t, w.write(cur), "%s of the new holder", w.name)
	}
	recs, err := cur.User(user).Records("k")
	require.NoError(t, err)
	require.Len(t, recs, 1)
	if !errors.Is(a.Check(), cluster.ErrExpired) {
		t.Fatal("the old holder may still sign")
	}
}

// The members of a cluster share the store's lock: the old holder's store
// stays open (a paused process's connection must not keep the standby
// out) while the new holder opens it; a single node (no epoch) is refused
// on their database, and a member on a single node's.
func TestStoreLockShared(t *testing.T) {
	ctx := ctxT(t)
	url := pg.Database(t)
	a, err := store.OpenPostgres(ctx, url, store.PostgresOptions{Epoch: 1})
	require.NoError(t, err)
	defer a.Close()
	b, err := store.OpenPostgres(ctx, url, store.PostgresOptions{Epoch: 2})
	require.NoError(t, err, "a standby that took over opens the store while the old holder has it open")
	defer b.Close()
	_, err = store.OpenPostgres(ctx, url, store.PostgresOptions{})
	require.ErrorContains(t, err, "another perund process")

	single := pg.Database(t)
	s, err := store.OpenPostgres(ctx, single, store.PostgresOptions{})
	require.NoError(t, err)
	defer s.Close()
	_, err = store.OpenPostgres(ctx, single, store.PostgresOptions{Epoch: 1})
	require.ErrorContains(t, err, "outside the cluster")
}

// A takeover waits for the old holder's writes in flight: a write
// transaction that passed the fence (holding the fence lock shared) commits
// before the standby raises the epoch, and the old holder's next write
// fails. Here the write is held open by hand; perund's own writes are one
// pipelined transaction each and never wait on the client.
func TestTakeoverWaitsForWritesInFlight(t *testing.T) {
	url := pg.Database(t)
	a, b := openLease(t, url, "a"), openLease(t, url, "b")
	ctx := ctxT(t)
	ok, err := a.TryAcquire(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	old, err := store.OpenPostgres(ctx, url, store.PostgresOptions{Epoch: a.Epoch()})
	require.NoError(t, err)
	defer old.Close()

	c, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer c.Close(context.Background())
	tx, err := c.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT perund_fence($1)`, a.Epoch())
	require.NoError(t, err, "the write in flight passed the fence")
	_, err = tx.Exec(ctx, `INSERT INTO docs (key, value) VALUES ('in-flight', 'x')`)
	require.NoError(t, err)

	a.Close() // a dies with its write in flight
	expireNow(t, url)
	took := make(chan error, 1)
	go func() {
		_, err := b.Acquire(ctx)
		took <- err
	}()
	select {
	case err := <-took:
		t.Fatalf("the takeover did not wait for the write in flight (err %v)", err)
	case <-time.After(2 * ttl):
	}
	require.NoError(t, tx.Commit(ctx), "the write in flight commits at its epoch")
	require.NoError(t, <-took)
	require.Equal(t, int64(2), b.Epoch())
	require.ErrorIs(t, old.Docs().Put(ctx, "after", nil), store.ErrFenced)
	v, ok, err := old.Docs().Get(ctx, "in-flight")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "x", string(v))
}
