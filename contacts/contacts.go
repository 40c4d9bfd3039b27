// Package contacts is a user's address book: aliases of peers with their
// Ethereum address and the host:port of their perund session. It is kept as
// one YAML document in a Storage: a file written atomically (temporary
// file, fsync, rename) by default, or the node's database (perund's
// PostgreSQL store, so that a standby node finds it).
package contacts

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/ethereum/go-ethereum/common"
	"go.yaml.in/yaml/v3"
)

var (
	// ErrNotFound is returned for an unknown alias or address.
	ErrNotFound = errors.New("contact not found")
	// ErrConflict is returned when an alias or address is taken by a contact
	// with other data.
	ErrConflict = errors.New("contact conflicts with an existing one")
	// ErrInvalid is wrapped by validation errors.
	ErrInvalid = errors.New("invalid contact")
)

// MaxAliasLen is the longest alias accepted.
const MaxAliasLen = 64

// Contact is one entry of the address book.
type Contact struct {
	Alias       string         `yaml:"alias" json:"alias"`
	Address     common.Address `yaml:"address" json:"address"`
	CommAddress string         `yaml:"commAddress" json:"commAddress"`
}

// InvalidError names the field of a contact that is not valid.
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason) }

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

// ParseAddress parses a 0x-prefixed hex Ethereum address: all lower or
// upper case, or mixed case with a valid EIP-55 checksum.
func ParseAddress(s string) (common.Address, error) {
	if len(s) != 42 || s[:2] != "0x" && s[:2] != "0X" || !common.IsHexAddress(s) {
		return common.Address{}, fmt.Errorf("%q is not a 0x-prefixed 20-byte hex address", s)
	}
	a := common.HexToAddress(s)
	// A mixed-case address carries an EIP-55 checksum: a typo shows.
	if h := s[2:]; h != strings.ToLower(h) && h != strings.ToUpper(h) && s[2:] != a.Hex()[2:] {
		return common.Address{}, fmt.Errorf("%q has a wrong EIP-55 checksum (mixed case): %s is the address with its checksum", s, a.Hex())
	}
	return a, nil
}

// ValidateAlias checks an alias: 1..64 printable characters without spaces.
func ValidateAlias(alias string) error {
	if alias == "" || len(alias) > MaxAliasLen {
		return &InvalidError{"alias", fmt.Sprintf("must have 1 to %d characters", MaxAliasLen)}
	}
	for _, r := range alias {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return &InvalidError{"alias", "must not contain spaces or control characters"}
		}
	}
	if common.IsHexAddress(alias) {
		return &InvalidError{"alias", "must not be an address"}
	}
	return nil
}

// ValidateCommAddress checks a host:port with a port in 1..65535.
func ValidateCommAddress(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil || host == "" {
		return &InvalidError{"commAddress", fmt.Sprintf("%q is not host:port", hp)}
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return &InvalidError{"commAddress", fmt.Sprintf("port %q is not in 1..65535", port)}
	}
	return nil
}

// Validate checks every field of c.
func (c Contact) Validate() error {
	if err := ValidateAlias(c.Alias); err != nil {
		return err
	}
	if c.Address == (common.Address{}) {
		return &InvalidError{"address", "must not be the zero address"}
	}
	return ValidateCommAddress(c.CommAddress)
}

// Book is one user's address book, backed by a YAML document. It is safe
// for concurrent use.
type Book struct {
	st   Storage
	path string // names the book in errors
	mu   sync.RWMutex
	list []Contact
}

// Storage keeps a book's YAML document.
type Storage interface {
	// Read returns the document; ok is false when there is none yet.
	Read() (data []byte, ok bool, err error)
	// Write replaces the document durably (atomically: a crash leaves the
	// old or the new one).
	Write(data []byte) error
}

// FileStorage is the document in the file at path.
func FileStorage(path string) Storage { return fileStorage(path) }

type fileStorage string

func (f fileStorage) Read() ([]byte, bool, error) {
	data, err := os.ReadFile(string(f))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err //nolint:wrapcheck // Open names the book
	}
	return data, true, nil
}

// Load reads the book at path; a missing file is an empty book.
func Load(path string) (*Book, error) { return Open(FileStorage(path), path) }

// Open reads the book kept in st (name says which in errors); a missing
// document is an empty book.
func Open(st Storage, name string) (*Book, error) {
	path := name
	b := &Book{st: st, path: name}
	data, ok, err := st.Read()
	if err != nil {
		return nil, fmt.Errorf("read contacts %s: %w", path, err)
	}
	if !ok {
		return b, nil
	}
	var file struct {
		Contacts []Contact `yaml:"contacts"`
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("parse contacts %s: %w", path, err)
	}
	for _, c := range file.Contacts {
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("contacts %s: %q: %w", path, c.Alias, err)
		}
		if _, _, dup := b.lookup(c); dup {
			return nil, fmt.Errorf("contacts %s: %q: %w", path, c.Alias, ErrConflict)
		}
		b.list = append(b.list, c)
	}
	return b, nil
}

// lookup finds contacts sharing c's alias or address.
func (b *Book) lookup(c Contact) (byAlias, byAddr int, found bool) {
	byAlias, byAddr = -1, -1
	for i, o := range b.list {
		if o.Alias == c.Alias {
			byAlias = i
		}
		if o.Address == c.Address {
			byAddr = i
		}
	}
	return byAlias, byAddr, byAlias >= 0 || byAddr >= 0
}

// Add adds c. Adding an identical contact again is a no-op; an alias or
// address that exists with other data is ErrConflict.
func (b *Book) Add(c Contact) error {
	if err := c.Validate(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ia, id, found := b.lookup(c)
	if found {
		if ia >= 0 && ia == id && b.list[ia] == c {
			return nil
		}
		return fmt.Errorf("add contact %q: %w", c.Alias, ErrConflict)
	}
	next := append(append([]Contact(nil), b.list...), c)
	if err := b.save(next); err != nil {
		return err
	}
	b.list = next
	return nil
}

// Replace puts c in place of the contact with c's address, in one write
// (a failed write leaves the old one). There being none is ErrNotFound;
// c's alias naming another contact is ErrConflict.
func (b *Book) Replace(c Contact) error {
	if err := c.Validate(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ia, id, _ := b.lookup(c)
	if id < 0 {
		return fmt.Errorf("replace contact %s: %w", c.Address.Hex(), ErrNotFound)
	}
	if ia >= 0 && ia != id {
		return fmt.Errorf("replace contact %s: alias %q: %w", c.Address.Hex(), c.Alias, ErrConflict)
	}
	next := append([]Contact(nil), b.list...)
	next[id] = c
	if err := b.save(next); err != nil {
		return err
	}
	b.list = next
	return nil
}

// Remove deletes the contact with alias.
func (b *Book) Remove(alias string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	next := make([]Contact, 0, len(b.list))
	for _, c := range b.list {
		if c.Alias != alias {
			next = append(next, c)
		}
	}
	if len(next) == len(b.list) {
		return fmt.Errorf("remove %q: %w", alias, ErrNotFound)
	}
	if err := b.save(next); err != nil {
		return err
	}
	b.list = next
	return nil
}

// Get returns the contact with alias.
func (b *Book) Get(alias string) (Contact, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, c := range b.list {
		if c.Alias == alias {
			return c, nil
		}
	}
	return Contact{}, fmt.Errorf("%q: %w", alias, ErrNotFound)
}

// ByAddress returns the contact with address a.
func (b *Book) ByAddress(a common.Address) (Contact, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, c := range b.list {
		if c.Address == a {
			return c, nil
		}
	}
	return Contact{}, fmt.Errorf("%s: %w", a.Hex(), ErrNotFound)
}

// Resolve finds a contact by alias or by address.
func (b *Book) Resolve(aliasOrAddress string) (Contact, error) {
	if a, err := ParseAddress(aliasOrAddress); err == nil {
		return b.ByAddress(a)
	}
	return b.Get(aliasOrAddress)
}

// List returns all contacts sorted by alias.
func (b *Book) List() []Contact {
	b.mu.RLock()
	out := append([]Contact(nil), b.list...)
	b.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Alias < out[j].Alias })
	return out
}

func (b *Book) save(list []Contact) error {
	data, err := yaml.Marshal(struct {
		Contacts []Contact `yaml:"contacts"`
	}{list})
	if err != nil {
		return fmt.Errorf("encode contacts: %w", err)
	}
	if err := b.st.Write(data); err != nil {
		return fmt.Errorf("save contacts: %w", err)
	}
	return nil
}

// Write replaces the file: a temporary file beside it, synced and renamed
// over it.
func (f fileStorage) Write(data []byte) error {
	path := string(f)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err //nolint:wrapcheck // save names the book
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".contacts-*.tmp")
	if err != nil {
		return err //nolint:wrapcheck // save names the book
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err //nolint:wrapcheck // save names the book
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err //nolint:wrapcheck // save names the book
	}
	if err := tmp.Close(); err != nil {
		return err //nolint:wrapcheck // save names the book
	}
	return os.Rename(tmp.Name(), path) //nolint:wrapcheck // save names the book
}
