package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// openPostgres opens the PostgreSQL store at url; it is closed when the
// test ends.
func openPostgres(t *testing.T, url string, o PostgresOptions) *Postgres {
	st, err := OpenPostgres(testCtx(t), url, o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return st
}

// sqlConn is a connection of its own to the database at url, as another
// client (or another perund) would have.
func sqlConn(t *testing.T, url string) *pgx.Conn {
	conn, err := pgx.Connect(testCtx(t), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// The schema is created at the first start and kept at the next; a
// database written by a newer perund is refused, untouched, with an error
// that says so and names the server.
func TestPostgresSchema(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	url := pg.Database(t)
	st, err := OpenPostgres(ctx, url, PostgresOptions{})
	require.NoError(t, err)
	require.NoError(t, st.User(addrA).PutRecord("k", []byte("v")))
	_, err = OpenPostgres(ctx, url, PostgresOptions{})
	require.ErrorContains(t, err, "another perund process uses this database")
	require.NoError(t, st.Close())

	conn := sqlConn(t, url)
	var v int
	require.NoError(t, conn.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v))
	require.Equal(t, PostgresSchemaVersion, v)

	st = openPostgres(t, url, PostgresOptions{})
	recs, err := st.User(addrA).Records("")
	require.NoError(t, err)
	require.Equal(t, []Record{{"k", []byte("v")}}, recs, "a second start keeps the data")
	require.NoError(t, st.Close())

	_, err = conn.Exec(ctx, `UPDATE schema_version SET version = $1`, PostgresSchemaVersion+1)
	require.NoError(t, err)
	_, err = OpenPostgres(ctx, url, PostgresOptions{})
	require.ErrorContains(t, err, fmt.Sprintf("schema version %d, but this perund knows versions up to %d", PostgresSchemaVersion+1, PostgresSchemaVersion))
	require.ErrorContains(t, err, "127.0.0.1:")
	require.ErrorContains(t, err, "newer perund")
	require.NoError(t, conn.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v))
	require.Equal(t, PostgresSchemaVersion+1, v, "the newer schema is left as it is")
}

var addrA = common.Address{0xa}

// Every schema version up to PostgresSchemaVersion has its migration, and
// none after it.
func TestPostgresMigrations(t *testing.T) {
	for v := 1; v <= PostgresSchemaVersion; v++ {
		require.NotEmpty(t, postgresMigration(v), "version %d", v)
	}
	require.Empty(t, postgresMigration(PostgresSchemaVersion+1))
	require.Empty(t, postgresMigration(0))
}

// A server that cannot be reached, or a malformed URL, is a clear error at
// start that names the server but never the password.
func TestPostgresUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close()) // nothing listens there now

	ctx := testCtx(t)
	start := time.Now()
	_, err = OpenPostgres(ctx, fmt.Sprintf("postgres://perund:s3cret@127.0.0.1:%d/channels?sslmode=disable", port), PostgresOptions{Timeout: 5 * time.Second})
	require.Error(t, err)
	require.Less(t, time.Since(start), 5*time.Second)
	require.ErrorContains(t, err, fmt.Sprintf("cannot connect to PostgreSQL at perund@127.0.0.1:%d/channels", port))
	require.NotContains(t, err.Error(), "s3cret")

	for _, u := range []string{
		"postgres://perund:s3cret@db.example:notaport/channels",
		"postgres://perund:s3cret@db.example/channels?sslmode=nonsense",
		"postgres://perund@db.example/channels?password=s3cret&sslmode=nonsense",
		"not a url, password=s3cret",
	} {
		_, err = OpenPostgres(ctx, u, PostgresOptions{})
		require.ErrorContains(t, err, "is not a PostgreSQL URL", u)
		require.NotContains(t, err.Error(), "s3cret", u)
	}
}

// A batch is one transaction: once Apply returned, another connection
// sees every write of it; a batch that fails writes nothing.
func TestPostgresBatchAtomic(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	url := pg.Database(t)
	st := openPostgres(t, url, PostgresOptions{})
	other := sqlConn(t, url)
	count := func() (n int) {
		require.NoError(t, other.QueryRow(ctx, `SELECT count(*) FROM kv`).Scan(&n))
		return n
	}

	b := st.db.NewBatch()
	require.NoError(t, b.Put("a", "1"))
	require.NoError(t, b.PutBytes("b", nil))
	require.NoError(t, b.Delete("missing"), "a batch deletes a missing key without error")
	require.NoError(t, b.Apply())
	require.Equal(t, 2, count(), "committed when Apply returns")
	v, err := st.db.GetBytes("b")
	require.NoError(t, err)
	require.Empty(t, v)

	// The second put fails on the server: the index cannot hold a key
	// this long (random bytes do not compress).
	long := make([]byte, 10000)
	_, err = rand.Read(long)
	require.NoError(t, err)
	b = st.db.NewBatch()
	require.NoError(t, b.Put("c", "1"))
	require.NoError(t, b.Delete("a"))
	require.NoError(t, b.Put(string(long), "x"))
	require.Error(t, b.Apply())
	require.Equal(t, 2, count(), "nothing of a failed batch is written")
	has, err := st.db.Has("a")
	require.NoError(t, err)
	require.True(t, has)

	// The store works on after the failed batch.
	b.Reset()
	require.NoError(t, b.Put("c", "1"))
	require.NoError(t, b.Apply())
	require.Equal(t, 3, count())
	require.Error(t, st.db.Delete("missing"), "a single delete of a missing key fails")
	_, err = st.db.Get("missing")
	require.ErrorContains(t, err, "not found")
}

// Every call is bounded by the store's timeout: a write that waits on a
// lock another client holds fails after it, and the store works once the
// lock is gone.
func TestPostgresTimeout(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	url := pg.Database(t)
	st := openPostgres(t, url, PostgresOptions{Timeout: 300 * time.Millisecond})
	other := sqlConn(t, url)
	tx, err := other.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `LOCK TABLE kv IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)

	start := time.Now()
	err = st.User(addrA).PutRecord("k", []byte("v"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
	_, err = st.Users(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	require.NoError(t, tx.Rollback(ctx))
	require.NoError(t, st.User(addrA).PutRecord("k", []byte("v")))
}

// Users is one query however many users there are, and lists them all.
func TestPostgresManyUsers(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	st := openPostgres(t, pg.Database(t), PostgresOptions{})
	const n = 1000
	b := st.db.NewBatch()
	for i := range n {
		var a common.Address
		a[0], a[19] = byte(i>>8), byte(i)
		for _, k := range []string{"Chan:x", "Peer:y", "Rec:z"} {
			require.NoError(t, b.Put(userKeyPrefix(a)+k, strings.Repeat("v", i%7)))
		}
	}
	require.NoError(t, b.Apply())
	users, err := st.Users(ctx)
	require.NoError(t, err)
	require.Len(t, users, n)
	for i, u := range users {
		require.Equal(t, byte(i>>8), u[0])
		require.Equal(t, byte(i), u[19])
	}
}
