// Package keys manages the node's Ethereum keystore: encrypted key files in
// the go-ethereum "Web3 Secret Storage" format (scrypt), one file per account.
package keys

import (
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/google/uuid"
)

var (
	// ErrNotFound is returned for an account that has no key file.
	ErrNotFound = errors.New("account not found")
	// ErrWrongPassword is returned when a key file does not decrypt.
	ErrWrongPassword = errors.New("wrong password")
	// ErrExists is returned when importing a key that is already stored.
	ErrExists = errors.New("account already exists")
)

// KDF strength of new key files.
type KDF struct{ N, P int }

var (
	// StandardKDF is go-ethereum's standard scrypt strength (about a second
	// and 256 MiB per unlock).
	StandardKDF = KDF{N: keystore.StandardScryptN, P: keystore.StandardScryptP}
	// LightKDF is go-ethereum's light scrypt strength, for dev mode and tests.
	LightKDF = KDF{N: keystore.LightScryptN, P: keystore.LightScryptP}
	// BenchKDF is the weakest scrypt: for benchmarks with thousands of
	// throw-away keys only (it protects nothing).
	BenchKDF = KDF{N: 2, P: 1}
)

// Store is a directory of key files. It is safe for concurrent use.
type Store struct {
	dir string
	kdf KDF
	mu  sync.Mutex
	// The index of the directory: the address of each key file read so
	// far, by file name, and the path of each address. It is brought up to
	// date when the directory's modification time changed (a key added or
	// removed, also by another process), reading only new files, so that a
	// lookup among thousands of keys costs one stat.
	byName  map[string]common.Address
	byAddr  map[common.Address]string
	scanned time.Time
}

// New returns the store in dir, creating the directory if needed.
func New(dir string, kdf KDF) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create keystore dir %s: %w", dir, err)
	}
	return &Store{dir: dir, kdf: kdf}, nil
}

// Dir returns the keystore directory.
func (s *Store) Dir() string { return s.dir }

// Create generates a new key, stores it encrypted with password and returns
// its address.
func (s *Store) Create(password string) (common.Address, error) {
	key, err := crypto.GenerateKey()
	if err != nil {
		return common.Address{}, fmt.Errorf("generate key: %w", err)
	}
	return s.Import(key, password)
}

// Import stores key encrypted with password; a key stored already is
// ErrExists.
func (s *Store) Import(key *ecdsa.PrivateKey, password string) (common.Address, error) {
	addr := crypto.PubkeyToAddress(key.PublicKey)
	if s.Has(addr) {
		// Found before scrypt's second and its memory are spent on it
		// (checked again under the lock before the write).
		return addr, fmt.Errorf("import %s: %w", addr.Hex(), ErrExists)
	}
	id, err := uuid.NewRandom()
	if err != nil {
		return addr, fmt.Errorf("import %s: %w", addr.Hex(), err)
	}
	// scrypt runs outside the lock: imports and unlocks run in parallel.
	k := &keystore.Key{Id: id, Address: addr, PrivateKey: key}
	data, err := keystore.EncryptKey(k, password, s.kdf.N, s.kdf.P)
	if err != nil {
		return addr, fmt.Errorf("encrypt key %s: %w", addr.Hex(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// find brings the index up to date just before the write, so that
	// indexLocked may take the directory's new time as current.
	if _, err := s.find(addr); err == nil {
		return addr, fmt.Errorf("import %s: %w", addr.Hex(), ErrExists)
	}
	name := fmt.Sprintf("UTC--%s--%s", time.Now().UTC().Format("2006-01-02T15-04-05.000000000Z"),
		strings.ToLower(addr.Hex()[2:]))
	path := filepath.Join(s.dir, name)
	if err := writeFileAtomic(path, data); err != nil {
		return addr, fmt.Errorf("store key %s: %w", addr.Hex(), err)
	}
	s.indexLocked(path, addr)
	return addr, nil
}

// List returns the addresses of all stored keys, sorted.
func (s *Store) List() ([]common.Address, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	files, err := s.scan()
	if err != nil {
		return nil, err
	}
	out := make([]common.Address, 0, len(files))
	for a := range files {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].Hex(), out[j].Hex()) < 0 })
	return out, nil
}

// Has reports whether a key for addr is stored.
func (s *Store) Has(addr common.Address) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.find(addr)
	return err == nil
}

// Unlock decrypts the key of addr with password.
func (s *Store) Unlock(addr common.Address, password string) (*ecdsa.PrivateKey, error) {
	s.mu.Lock()
	path, err := s.find(addr)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", addr.Hex(), err)
	}
	k, err := keystore.DecryptKey(data, password)
	if err != nil {
		if errors.Is(err, keystore.ErrDecrypt) {
			return nil, fmt.Errorf("unlock %s: %w", addr.Hex(), ErrWrongPassword)
		}
		return nil, fmt.Errorf("unlock %s: %w", addr.Hex(), err)
	}
	if k.Address != addr {
		return nil, fmt.Errorf("unlock %s: key file holds %s", addr.Hex(), k.Address.Hex())
	}
	return k.PrivateKey, nil
}

func (s *Store) find(addr common.Address) (string, error) {
	files, err := s.scan()
	if err != nil {
		return "", err
	}
	p, ok := files[addr]
	if !ok {
		return "", fmt.Errorf("%s: %w", addr.Hex(), ErrNotFound)
	}
	return p, nil
}

// scan returns the index of the directory, reading the key files added
// since the last scan; s.mu must be held.
func (s *Store) scan() (map[common.Address]string, error) {
	fi, err := os.Stat(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read keystore dir: %w", err)
	}
	if s.byAddr != nil && fi.ModTime().Equal(s.scanned) && (precise(fi.ModTime()) || time.Since(fi.ModTime()) > time.Second) {
		return s.byAddr, nil
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read keystore dir: %w", err)
	}
	byName := make(map[string]common.Address, len(entries))
	byAddr := make(map[common.Address]string, len(entries))
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmp") {
			continue
		}
		p := filepath.Join(s.dir, name)
		a, ok := s.byName[name]
		if !ok {
			data, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			var f struct {
				Address string `json:"address"`
			}
			if json.Unmarshal(data, &f) != nil || !common.IsHexAddress(f.Address) {
				continue
			}
			a = common.HexToAddress(f.Address)
		}
		byName[name] = a
		byAddr[a] = p
	}
	s.byName, s.byAddr, s.scanned = byName, byAddr, fi.ModTime()
	return byAddr, nil
}

// precise tells whether t comes from a file system with sub-second
// timestamps (ext4, xfs, btrfs, tmpfs): there, two changes of a directory
// get different times. On a coarse one, a change within the same second as
// the last scan may keep the time, so a directory changed in the last
// second is scanned again.
func precise(t time.Time) bool { return t.Nanosecond() != 0 }

// indexLocked adds a file this store wrote to the index, so that its own
// writes need no rescan; s.mu must be held.
func (s *Store) indexLocked(path string, addr common.Address) {
	fi, err := os.Stat(s.dir)
	if err != nil || s.byAddr == nil {
		s.scanned = time.Time{} // rescan at the next lookup
		return
	}
	// Another writer may have changed the directory since the last scan:
	// only if the time moved by our write alone is the index current.
	s.byName[filepath.Base(path)] = addr
	s.byAddr[addr] = path
	if !precise(fi.ModTime()) {
		s.scanned = time.Time{}
		return
	}
	s.scanned = fi.ModTime()
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err == nil {
		_ = f.Sync()
		f.Close()
	}
	return os.Rename(tmp, path)
}

// File is one encrypted key file of the keystore.
type File struct {
	Name string
	Data []byte
}

// Files returns every key file of the store (encrypted, as on disk), in
// order of name.
func (s *Store) Files() ([]File, error) {
	s.mu.Lock()
	files, err := s.scan()
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := make([]File, 0, len(files))
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read key file: %w", err)
		}
		out = append(out, File{Name: filepath.Base(p), Data: data})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AddFile stores a key file copied from another keystore (the node's
// database) under its name, unless the store has a key for its address
// already (then it reports false). The file stays encrypted: it is
// checked only for the address it names.
func (s *Store) AddFile(f File) (bool, error) {
	var head struct {
		Address string `json:"address"`
	}
	name := filepath.Base(f.Name)
	if name != f.Name || name == "." || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmp") {
		return false, fmt.Errorf("add key file %q: not a plain file name", f.Name)
	}
	if err := json.Unmarshal(f.Data, &head); err != nil || !common.IsHexAddress(head.Address) {
		return false, fmt.Errorf("add key file %s: not a key file with an address", name)
	}
	addr := common.HexToAddress(head.Address)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.find(addr); err == nil {
		return false, nil
	}
	path := filepath.Join(s.dir, name)
	if err := writeFileAtomic(path, f.Data); err != nil {
		return false, fmt.Errorf("add key file %s: %w", name, err)
	}
	s.indexLocked(path, addr)
	return true, nil
}

// FileOf returns the key file of addr.
func (s *Store) FileOf(addr common.Address) (File, error) {
	s.mu.Lock()
	p, err := s.find(addr)
	s.mu.Unlock()
	if err != nil {
		return File{}, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return File{}, fmt.Errorf("read key file of %s: %w", addr.Hex(), err)
	}
	return File{Name: filepath.Base(p), Data: data}, nil
}
