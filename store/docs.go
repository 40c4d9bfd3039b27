package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Docs holds the node's small documents beside the channels: each user's
// session metadata and contacts, the records of open sessions (with their
// tokens hashed) and, on PostgreSQL, the keystore's encrypted key files. A
// key is a slash-separated path of names ("0x…/contacts.yaml"); its last
// element is the document. Its methods are safe for concurrent use.
//
// FileDocs keeps them as files in the data dir (the default, today's
// layout); PostgresDocs in the store's database, so that a standby node on
// another machine finds them.
type Docs interface {
	// Get returns the document under key; ok is false when there is none.
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)
	// Put stores value under key, replacing what was there. It returns
	// once the write is durable.
	Put(ctx context.Context, key string, value []byte) error
	// Delete removes the document under key; a missing one is no error.
	Delete(ctx context.Context, key string) error
	// List returns the documents directly under the directory dir (a key
	// prefix ending in "/"), in ascending order of key.
	List(ctx context.Context, dir string) ([]Record, error)
}

// validDocKey checks that key is a relative slash path of plain names.
func validDocKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return fmt.Errorf("document key %q: want a relative path of names", key)
	}
	for _, e := range strings.Split(key, "/") {
		if e == "" || e == "." || e == ".." || strings.ContainsRune(e, '\\') {
			return fmt.Errorf("document key %q: want a relative path of names", key)
		}
	}
	return nil
}

// validDocDir checks a List directory: "" (the top) or a key ending in "/".
func validDocDir(dir string) error {
	if dir == "" {
		return nil
	}
	if !strings.HasSuffix(dir, "/") {
		return fmt.Errorf("document directory %q: want a path ending in /", dir)
	}
	return validDocKey(strings.TrimSuffix(dir, "/"))
}

// FileDocs keeps documents as files under a directory: key a/b is the file
// dir/a/b. A write goes to a temporary file that is synced and renamed
// over the document, so that a crash leaves the old or the new one.
type FileDocs struct {
	dir string
}

var _ Docs = (*FileDocs)(nil)

// NewFileDocs returns the documents under dir (the node's data dir).
func NewFileDocs(dir string) *FileDocs { return &FileDocs{dir: dir} }

func (d *FileDocs) path(key string) string { return filepath.Join(d.dir, filepath.FromSlash(key)) }

// Get reads the file of key.
func (d *FileDocs) Get(_ context.Context, key string) ([]byte, bool, error) {
	if err := validDocKey(key); err != nil {
		return nil, false, err
	}
	b, err := os.ReadFile(d.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", key, err)
	}
	return b, true, nil
}

// Put writes the file of key atomically, creating its directory.
func (d *FileDocs) Put(_ context.Context, key string, value []byte) error {
	if err := validDocKey(key); err != nil {
		return err
	}
	p := d.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	if err := WriteFileAtomic(p, value); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// Delete removes the file of key.
func (d *FileDocs) Delete(_ context.Context, key string) error {
	if err := validDocKey(key); err != nil {
		return err
	}
	if err := os.Remove(d.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// List reads the files of directory dir (not its subdirectories, nor
// temporary files).
func (d *FileDocs) List(_ context.Context, dir string) ([]Record, error) {
	if err := validDocDir(dir); err != nil {
		return nil, err
	}
	where := d.dir
	if dir != "" {
		where = d.path(strings.TrimSuffix(dir, "/"))
	}
	ents, err := os.ReadDir(where)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []Record
	for _, e := range ents {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		key := path.Join(dir, e.Name())
		b, err := os.ReadFile(d.path(key))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		out = append(out, Record{Key: key, Value: b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// WriteFileAtomic writes data to path through a synced temporary file
// renamed over it (mode 0600).
func WriteFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err //nolint:wrapcheck // the caller names the document
	}
	_, err = f.Write(data)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err //nolint:wrapcheck // the caller names the document
	}
	return os.Rename(tmp, path) //nolint:wrapcheck // the caller names the document
}

// Docs returns the documents kept in the store's database (table docs),
// written under the store's fence like the channels.
func (s *Postgres) Docs() Docs { return &pgDocs{d: s.db} }

// pgDocs is Docs over the docs table.
type pgDocs struct{ d *pgKV }

var _ Docs = (*pgDocs)(nil)

// Get reads the document under key.
func (p *pgDocs) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := validDocKey(key); err != nil {
		return nil, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.d.timeout)
	defer cancel()
	var v []byte
	err := p.d.pool.QueryRow(ctx, `SELECT value FROM docs WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", key, err)
	}
	return v, true, nil
}

// Put writes the document under key in a committed transaction.
func (p *pgDocs) Put(_ context.Context, key string, value []byte) error {
	if err := validDocKey(key); err != nil {
		return err
	}
	if _, err := p.d.write(func(b *pgx.Batch) {
		b.Queue(`INSERT INTO docs (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, key, notNull(value))
	}); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// Delete removes the document under key.
func (p *pgDocs) Delete(_ context.Context, key string) error {
	if err := validDocKey(key); err != nil {
		return err
	}
	if _, err := p.d.write(func(b *pgx.Batch) { b.Queue(`DELETE FROM docs WHERE key = $1`, key) }); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// List reads the documents directly under dir.
func (p *pgDocs) List(ctx context.Context, dir string) ([]Record, error) {
	if err := validDocDir(dir); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.d.timeout)
	defer cancel()
	// Keys under dir without a further slash, in byte order.
	rows, err := p.d.pool.Query(ctx, `SELECT key, value FROM docs
		WHERE starts_with(key, $1) AND strpos(substr(key, length($1) + 1), '/') = 0
		ORDER BY key COLLATE "C"`, dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		if err := rows.Scan(&r.Key, &r.Value); err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	return out, nil
}
