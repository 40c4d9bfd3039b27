package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"polycry.pt/poly-go/sortedkv"
	"polycry.pt/poly-go/sortedkv/key"
)

// The PostgreSQL store keeps the same key-value data as LevelDB, in one
// table:
//
//	kv(key bytea PRIMARY KEY, value bytea NOT NULL)
//
// with the same keys (a user's keys under userKeyPrefix). bytea compares
// byte by byte, so an index range scan returns keys in LevelDB's order, and
// go-perun's key-value PersistRestorer (with the repairs of kvView) runs on
// it unchanged.

// DefaultPostgresTimeout bounds each call to PostgreSQL when
// PostgresOptions.Timeout is zero.
const DefaultPostgresTimeout = 10 * time.Second

// PostgresOptions configure a PostgreSQL store.
type PostgresOptions struct {
	// Timeout bounds each call to the database: one read, one write, one
	// batch, one page of an iteration, and each step of opening the store
	// (go-perun's key-value interface passes no context). Zero means
	// DefaultPostgresTimeout.
	Timeout time.Duration
	// Epoch, if not zero, is the epoch of the cluster lease this process
	// holds (package cluster): the store then holds its advisory lock
	// shared with the other members (refusing a database of a single
	// node), and every write checks in its own transaction that the lease
	// row still has this epoch, failing with ErrFenced once another
	// process took the lease over. Zero: one perund per database, guarded
	// by the store's advisory lock held alone.
	Epoch int64
}

// ErrFenced is wrapped by a write refused because the cluster lease has
// passed to another process (PostgresOptions.Epoch).
var ErrFenced = errors.New("fenced: the cluster lease belongs to another process")

// fenceState is the SQLSTATE perund_fence raises.
const fenceState = "PF001"

// fenceSQL checks the lease's epoch inside a write's transaction. It holds
// the fence lock (FenceLockID) shared until the transaction ends, and a
// takeover holds it alone while it raises the epoch, so that a takeover
// waits for the writes in flight and every later write of the old holder
// fails. (An advisory lock, not FOR SHARE on the lease row: many writers
// sharing a row lock write a multixact into the row each time.)
const fenceSQL = `SELECT perund_fence($1)`

// FenceLockID is the transaction-level advisory lock that orders writes
// (shared) and takeovers of the lease (exclusive).
const FenceLockID int64 = 0x706572756e66

// LeaseName is the key of the cluster lease's row in the lease table.
const LeaseName = "active"

// fenced turns the error of a fenced write into one wrapping ErrFenced.
func fenced(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == fenceState {
		return fmt.Errorf("%w (%s)", ErrFenced, pe.Message)
	}
	return err
}

// Postgres is the Store on a PostgreSQL database. Every batch go-perun
// applies is one transaction, committed before Apply returns: a state the
// node acknowledged is as durable as the server makes a commit
// (synchronous_commit, replication). The store holds a session-level
// advisory lock on a connection of its own while it is open, so that a
// second perund on the same database is refused at once, as LevelDB's
// directory lock does.
type Postgres struct {
	pool *pgxpool.Pool
	lock *pgx.Conn
	// shared: the lock is held shared, by a cluster member.
	shared bool
	db     *pgKV
	where  string

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Postgres)(nil)

// postgresLockID is the advisory lock (in the store's database) that an
// open store holds: "perund" in ASCII.
const postgresLockID int64 = 0x706572756e64

// postgresMigrationLockID serialises migrations of processes starting
// together (a transaction-level advisory lock).
const postgresMigrationLockID int64 = 0x706572756e6d

// PostgresSchemaVersion is the schema version this perund writes.
const PostgresSchemaVersion = 2

// postgresMigration returns the statement that brings the schema from
// version v-1 to v, or "" for a version this perund does not know. A
// released migration is never changed: a change of the schema is a new
// version.
func postgresMigration(v int) string {
	switch v {
	case 1: // the key-value table
		return `CREATE TABLE kv (key bytea PRIMARY KEY, value bytea NOT NULL)`
	case 2: // documents, the cluster lease and the write fence
		return `CREATE TABLE docs (key text PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE lease (
	name text PRIMARY KEY,
	holder text NOT NULL,
	epoch bigint NOT NULL,
	expires timestamptz NOT NULL);
CREATE FUNCTION perund_fence(want bigint) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE have bigint;
BEGIN
	PERFORM pg_advisory_xact_lock_shared(123581014306406);
	SELECT epoch INTO have FROM lease WHERE name = 'active';
	IF have IS DISTINCT FROM want THEN
		RAISE EXCEPTION 'the lease has epoch %, this process holds epoch %', have, want
			USING ERRCODE = 'PF001';
	END IF;
END $fn$`
	}
	return ""
}

// OpenPostgres opens the store in the PostgreSQL database at rawURL
// (postgres://user:password@host:port/database; pgx's parameters such as
// sslmode or pool_max_conns may follow as a query). It connects, takes the
// store's lock (unless o.Epoch fences the writes instead), and creates or
// migrates the schema in one transaction. It fails with an error naming
// the server (never the password) when the server cannot be reached, when
// another process holds the store, and when the database has a schema
// newer than this version of perund knows.
func OpenPostgres(ctx context.Context, rawURL string, o PostgresOptions) (*Postgres, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultPostgresTimeout
	}
	cfg, where, err := parsePostgresURL(rawURL)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	lock, err := pgx.ConnectConfig(lctx, cfg.ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("open channel store: cannot connect to PostgreSQL at %s: %w", where, err)
	}
	s := &Postgres{lock: lock, where: where, shared: o.Epoch != 0}
	// A single node holds the lock alone; the members of a cluster share
	// it (the lease orders them, and a paused member must not keep a
	// standby out), which still keeps a single node off their database
	// and them off a single node's.
	take, who := `SELECT pg_try_advisory_lock($1)`, "another perund process uses this database (it holds the store's lock)"
	if s.shared {
		take, who = `SELECT pg_try_advisory_lock_shared($1)`, "a perund process outside the cluster uses this database (it holds the store's lock)"
	}
	var locked bool
	if err := lock.QueryRow(lctx, take, postgresLockID).Scan(&locked); err != nil {
		_ = lock.Close(context.Background())
		return nil, fmt.Errorf("open channel store at %s: take the store's lock: %w", where, err)
	}
	if !locked {
		_ = lock.Close(context.Background())
		return nil, fmt.Errorf("open channel store at %s: %s", where, who)
	}
	if err := migratePostgres(lctx, lock, where); err != nil {
		_ = s.Close()
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open channel store at %s: %w", where, err)
	}
	s.pool = pool
	s.db = &pgKV{pool: pool, timeout: o.Timeout, page: defaultPage, epoch: o.Epoch}
	return s, nil
}

// parsePostgresURL parses a store URL; its error never shows the password.
func parsePostgresURL(rawURL string) (*pgxpool.Config, string, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		// pgx's message quotes the URL, with the password removed only on
		// a best-effort basis: leave it out.
		return nil, "", fmt.Errorf("open channel store: %s is not a PostgreSQL URL like postgres://user:password@host:port/database", RedactURL(rawURL))
	}
	return cfg, describePostgres(cfg), nil
}

// MigratePostgres creates or migrates the schema of the database at
// rawURL, as OpenPostgres does, without opening the store: a standby
// (package cluster) needs the lease table before it holds the lease.
func MigratePostgres(ctx context.Context, rawURL string) error {
	cfg, where, err := parsePostgresURL(rawURL)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultPostgresTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return fmt.Errorf("migrate channel store: cannot connect to PostgreSQL at %s: %w", where, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	return migratePostgres(ctx, conn, where)
}

// migratePostgres brings the schema to PostgresSchemaVersion in one
// transaction, or refuses a schema newer than that.
func migratePostgres(ctx context.Context, conn *pgx.Conn, where string) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate channel store at %s: %w", where, err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	// Processes starting together migrate one after the other.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, postgresMigrationLockID); err != nil {
		return fmt.Errorf("migrate channel store at %s: take the migration lock: %w", where, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		one boolean PRIMARY KEY DEFAULT true CHECK (one),
		version integer NOT NULL)`); err != nil {
		return fmt.Errorf("migrate channel store at %s: create schema_version: %w", where, err)
	}
	var version int
	err = tx.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&version)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("migrate channel store at %s: read schema version: %w", where, err)
	}
	if version > PostgresSchemaVersion {
		return fmt.Errorf("channel store at %s has schema version %d, but this perund knows versions up to %d: the database was written by a newer perund; run that version (or a newer one)", where, version, PostgresSchemaVersion)
	}
	if version == PostgresSchemaVersion {
		return nil
	}
	for v := version + 1; v <= PostgresSchemaVersion; v++ {
		if _, err := tx.Exec(ctx, postgresMigration(v)); err != nil {
			return fmt.Errorf("migrate channel store at %s to schema version %d: %w", where, v, err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)
		ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version`, PostgresSchemaVersion); err != nil {
		return fmt.Errorf("migrate channel store at %s: write schema version: %w", where, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate channel store at %s: commit: %w", where, err)
	}
	return nil
}

// describePostgres names the database of cfg without its password:
// user@host:port/database.
func describePostgres(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("%s@%s/%s", c.User, hostPort(c.Host, c.Port), c.Database)
}

// hostPort joins a host (a name, an IP address or a socket directory) and
// a port.
func hostPort(host string, port uint16) string {
	if len(host) > 0 && host[0] == '/' {
		return host + ":" + strconv.Itoa(int(port))
	}
	return (&url.URL{Host: host + ":" + strconv.Itoa(int(port))}).Host
}

// RedactURL returns a postgres:// URL without its password and
// parameters (a password may be one), or a placeholder for anything else
// (which could hold a password anywhere).
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return "(a value that is not a postgres:// URL)"
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	if u.User != nil {
		r.User = url.User(u.User.Username())
	}
	return r.String()
}

// User returns addr's view: go-perun's key-value PersistRestorer over the
// user's key space (with the repairs of kvView).
func (s *Postgres) User(addr common.Address) View {
	return newKVView(noClose{sortedkv.NewTable(s.db, userKeyPrefix(addr))})
}

// Users lists the users with data. It is one query that reads one key per
// user: a recursive skip-scan of the primary key that seeks from a user's
// first key past the user's key space. It needs no table of users, so a
// write costs nothing extra and the list is always what the keys say.
func (s *Postgres) Users(ctx context.Context) ([]common.Address, error) {
	ctx, cancel := context.WithTimeout(ctx, s.db.timeout)
	defer cancel()
	// The next key space after k: a user's prefix ends in '/' (byte 47),
	// and '0' follows it. A key of another form (reported below) is
	// stepped over by its successor, so that the scan always advances.
	rows, err := s.pool.Query(ctx, `WITH RECURSIVE heads(k) AS (
			(SELECT key FROM kv WHERE key >= $1 AND key < $2 ORDER BY key LIMIT 1)
			UNION ALL
			SELECT (SELECT key FROM kv
				WHERE key >= CASE
					WHEN length(f.k) >= $3 AND get_byte(f.k, $3 - 1) = 47
					THEN substring(f.k FROM 1 FOR $3 - 1) || '\x30'::bytea
					ELSE f.k || '\x00'::bytea END
				AND key < $2 ORDER BY key LIMIT 1)
			FROM heads f WHERE f.k IS NOT NULL)
		SELECT substring(k FROM 1 FOR $3) FROM heads WHERE k IS NOT NULL ORDER BY 1`,
		[]byte(userSpace), []byte(key.IncPrefix(userSpace)), userPrefix)
	if err != nil {
		return nil, fmt.Errorf("list the store's users: %w", err)
	}
	defer rows.Close()
	var out []common.Address
	for rows.Next() {
		var k []byte
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("list the store's users: %w", err)
		}
		addr, err := parseUserKey(string(k))
		if err != nil {
			return nil, fmt.Errorf("list the store's users: %w", err)
		}
		out = append(out, addr)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list the store's users: %w", err)
	}
	return out, nil
}

// Close releases the store's lock and closes its connections; closing it
// again does nothing. Views fail afterwards.
func (s *Postgres) Close() error {
	s.closeOnce.Do(func() {
		if s.pool != nil {
			s.pool.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), DefaultPostgresTimeout)
		defer cancel()
		unlock := `SELECT pg_advisory_unlock($1)`
		if s.shared {
			unlock = `SELECT pg_advisory_unlock_shared($1)`
		}
		// Unlock before closing: the server releases a session's locks
		// only when its backend has exited, which a node started again at
		// once could otherwise race. If this fails, the connection is
		// gone, and its lock with it.
		_, _ = s.lock.Exec(ctx, unlock, postgresLockID)
		if err := s.lock.Close(ctx); err != nil {
			s.closeErr = fmt.Errorf("close channel store at %s: %w", s.where, err)
		}
	})
	return s.closeErr
}

// defaultPage is how many keys an iterator reads per query.
const defaultPage = 512

// pgKV is sortedkv.Database over the kv table. Each call is one statement
// (a batch one transaction) under the store's timeout.
type pgKV struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	// page is how many keys an iterator reads per query.
	page int
	// epoch fences every write (PostgresOptions.Epoch); 0: none.
	epoch int64
}

var _ sortedkv.Database = (*pgKV)(nil)

func (d *pgKV) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d.timeout)
}

// Has reports whether key is present.
func (d *pgKV) Has(k string) (bool, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	var has bool
	if err := d.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kv WHERE key = $1)`, []byte(k)).Scan(&has); err != nil {
		return false, fmt.Errorf("has %q: %w", k, err)
	}
	return has, nil
}

// Get returns the value of key.
func (d *pgKV) Get(k string) (string, error) {
	v, err := d.GetBytes(k)
	return string(v), err
}

// GetBytes returns the value of key; a missing key is a
// *sortedkv.NotFoundError.
func (d *pgKV) GetBytes(k string) ([]byte, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	var v []byte
	err := d.pool.QueryRow(ctx, `SELECT value FROM kv WHERE key = $1`, []byte(k)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get %q: %w", k, &sortedkv.NotFoundError{Key: k})
	}
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", k, err)
	}
	return v, nil
}

const (
	putSQL = `INSERT INTO kv (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`
	deleteSQL = `DELETE FROM kv WHERE key = $1`
)

// Put inserts or overwrites key.
func (d *pgKV) Put(k, v string) error { return d.PutBytes(k, []byte(v)) }

// PutBytes inserts or overwrites key.
func (d *pgKV) PutBytes(k string, v []byte) error {
	if _, err := d.write(func(b *pgx.Batch) { b.Queue(putSQL, []byte(k), notNull(v)) }); err != nil {
		return fmt.Errorf("put %q: %w", k, err)
	}
	return nil
}

// write runs the statements queue adds as one transaction in one round
// trip (pgx sends them with one Sync, which PostgreSQL runs as one
// implicit transaction and commits before it answers), after the fence
// when the store has one. It returns the tag of each statement queued.
// Nothing waits on the client inside the transaction, so a paused process
// cannot hold the lease row's lock.
func (d *pgKV) write(queue func(*pgx.Batch)) ([]pgconn.CommandTag, error) {
	var batch pgx.Batch
	if d.epoch != 0 {
		batch.Queue(fenceSQL, d.epoch)
	}
	fence := batch.Len()
	queue(&batch)
	ctx, cancel := d.ctx()
	defer cancel()
	res := d.pool.SendBatch(ctx, &batch)
	tags := make([]pgconn.CommandTag, 0, batch.Len()-fence)
	var err error
	for i := range batch.Len() {
		var tag pgconn.CommandTag
		if tag, err = res.Exec(); err != nil {
			break
		}
		if i >= fence {
			tags = append(tags, tag)
		}
	}
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fenced(err)
	}
	return tags, nil
}

// Delete removes key; like LevelDB's adapter, it fails if key is missing.
func (d *pgKV) Delete(k string) error {
	tags, err := d.write(func(b *pgx.Batch) { b.Queue(deleteSQL, []byte(k)) })
	if err != nil {
		return fmt.Errorf("delete %q: %w", k, err)
	}
	if tags[0].RowsAffected() == 0 {
		return fmt.Errorf("delete %q: %w", k, errNotFound)
	}
	return nil
}

// notNull returns v, or an empty value for nil (which pgx sends as NULL).
func notNull(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// NewBatch returns a batch that Apply writes in one transaction.
func (d *pgKV) NewBatch() sortedkv.Batch { return &pgBatch{d: d} }

// NewIterator iterates over every key.
func (d *pgKV) NewIterator() sortedkv.Iterator { return d.NewIteratorWithRange("", "") }

// NewIteratorWithRange iterates over the keys in [start, end); an empty end
// is no bound.
func (d *pgKV) NewIteratorWithRange(start, end string) sortedkv.Iterator {
	it := &pgIterator{d: d, from: []byte(start)}
	if end != "" {
		it.end = []byte(end)
	}
	return it
}

// NewIteratorWithPrefix iterates over the keys starting with prefix.
func (d *pgKV) NewIteratorWithPrefix(prefix string) sortedkv.Iterator {
	return d.NewIteratorWithRange(prefix, key.IncPrefix(prefix))
}

// Close does nothing: the Postgres store owns the connections.
func (d *pgKV) Close() error { return nil }

// pgBatch collects writes for one transaction.
type pgBatch struct {
	d   *pgKV
	ops []pgOp
}

type pgOp struct {
	del   bool
	key   []byte
	value []byte
}

// Put adds a put of key.
func (b *pgBatch) Put(k, v string) error { return b.PutBytes(k, []byte(v)) }

// PutBytes adds a put of key.
func (b *pgBatch) PutBytes(k string, v []byte) error {
	b.ops = append(b.ops, pgOp{key: []byte(k), value: append([]byte{}, v...)})
	return nil
}

// Delete adds a delete of key; a missing key is no error.
func (b *pgBatch) Delete(k string) error {
	b.ops = append(b.ops, pgOp{del: true, key: []byte(k)})
	return nil
}

// Apply writes the batch in one transaction, in one round trip: pgx sends
// the statements with one Sync, which PostgreSQL runs as one implicit
// transaction and commits before it answers. It returns once the commit
// is acknowledged; on an error nothing of the batch is written.
func (b *pgBatch) Apply() error {
	if len(b.ops) == 0 {
		return nil
	}
	_, err := b.d.write(func(batch *pgx.Batch) {
		for _, op := range b.ops {
			if op.del {
				batch.Queue(deleteSQL, op.key)
			} else {
				batch.Queue(putSQL, op.key, op.value)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("apply batch of %d writes: %w", len(b.ops), err)
	}
	return nil
}

// Reset empties the batch.
func (b *pgBatch) Reset() { b.ops = b.ops[:0] }

// pgIterator reads a key range in pages of d.page keys, each page one
// query (a consistent snapshot) that holds no connection between calls.
// A range larger than a page is not read as one snapshot; kvView restores
// each channel through the channel's own few keys, which fit a page.
type pgIterator struct {
	d *pgKV
	// from is where the next page starts: at from, or after it once a
	// page ended there (after).
	from  []byte
	after bool
	end   []byte // nil: no bound
	done  bool   // no page follows

	page []pgOp
	i    int
	err  error
}

// Next moves to the next key; it returns false at the end, on an error
// (Close returns it) and once closed.
func (it *pgIterator) Next() bool {
	if it.err != nil {
		return false
	}
	if it.i+1 < len(it.page) {
		it.i++
		return true
	}
	if it.done {
		it.page, it.i = nil, 0
		return false
	}
	if err := it.fetch(); err != nil {
		it.err = err
		it.page, it.done = nil, true
		return false
	}
	it.i = 0
	return len(it.page) > 0
}

// fetch reads the next page.
func (it *pgIterator) fetch() error {
	op := ">="
	if it.after {
		op = ">"
	}
	args := []any{it.from, it.d.page}
	q := `SELECT key, value FROM kv WHERE key ` + op + ` $1 ORDER BY key LIMIT $2`
	if it.end != nil {
		q = `SELECT key, value FROM kv WHERE key ` + op + ` $1 AND key < $3 ORDER BY key LIMIT $2`
		args = append(args, it.end)
	}
	ctx, cancel := it.d.ctx()
	defer cancel()
	rows, err := it.d.pool.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("iterate from %q: %w", it.from, err)
	}
	page := it.page[:0]
	for rows.Next() {
		var kv pgOp
		if err := rows.Scan(&kv.key, &kv.value); err != nil {
			rows.Close()
			return fmt.Errorf("iterate from %q: %w", it.from, err)
		}
		page = append(page, kv)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("iterate from %q: %w", it.from, err)
	}
	it.page = page
	if len(page) < it.d.page {
		it.done = true
	} else {
		it.from, it.after = page[len(page)-1].key, true
	}
	return nil
}

// Key returns the current key, or "" when there is none.
func (it *pgIterator) Key() string {
	if it.i >= len(it.page) {
		return ""
	}
	return string(it.page[it.i].key)
}

// Value returns the current value, or "" when there is none.
func (it *pgIterator) Value() string { return string(it.ValueBytes()) }

// ValueBytes returns the current value, or nil when there is none.
func (it *pgIterator) ValueBytes() []byte {
	if it.i >= len(it.page) {
		return nil
	}
	return it.page[it.i].value
}

// Close ends the iteration and returns its error; it may be called again.
func (it *pgIterator) Close() error {
	it.page, it.i, it.done = nil, 0, true
	return it.err
}

// kv returns the key-value database under the views.
func (s *Postgres) kv() sortedkv.Database { return s.db }
