package contacts

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"
)

var (
	addrA = common.HexToAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
	addrB = common.HexToAddress("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
)

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "u", "contacts.yaml")
	b, err := Load(path)
	require.NoError(t, err)
	require.Empty(t, b.List())
	require.NoError(t, b.Add(Contact{"bob", addrB, "127.0.0.1:5000"}))
	require.NoError(t, b.Add(Contact{"alice", addrA, "localhost:5001"}))
	require.NoError(t, b.Add(Contact{"alice", addrA, "localhost:5001"}), "identical add is a no-op")

	b2, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, b.List(), b2.List())
	require.Equal(t, "alice", b2.List()[0].Alias)
	c, err := b2.Resolve("0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc")
	require.NoError(t, err)
	require.Equal(t, "bob", c.Alias)

	require.NoError(t, b2.Remove("bob"))
	require.ErrorIs(t, b2.Remove("bob"), ErrNotFound)
	b3, err := Load(path)
	require.NoError(t, err)
	require.Len(t, b3.List(), 1)
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary files are left behind")
}

func TestBadInput(t *testing.T) {
	b, err := Load(filepath.Join(t.TempDir(), "contacts.yaml"))
	require.NoError(t, err)
	require.NoError(t, b.Add(Contact{"bob", addrB, "127.0.0.1:5000"}))
	tests := []struct {
		name  string
		c     Contact
		err   error
		field string
	}{
		{"empty alias", Contact{"", addrA, "127.0.0.1:1"}, ErrInvalid, "alias"},
		{"alias with space", Contact{"a b", addrA, "127.0.0.1:1"}, ErrInvalid, "alias"},
		{"alias is an address", Contact{addrA.Hex(), addrA, "127.0.0.1:1"}, ErrInvalid, "alias"},
		{"zero address", Contact{"z", common.Address{}, "127.0.0.1:1"}, ErrInvalid, "address"},
		{"no port", Contact{"a", addrA, "127.0.0.1"}, ErrInvalid, "commAddress"},
		{"port out of range", Contact{"a", addrA, "127.0.0.1:70000"}, ErrInvalid, "commAddress"},
		{"alias taken", Contact{"bob", addrA, "127.0.0.1:1"}, ErrConflict, ""},
		{"address taken", Contact{"bobby", addrB, "127.0.0.1:5000"}, ErrConflict, ""},
		{"same alias other host", Contact{"bob", addrB, "127.0.0.1:5001"}, ErrConflict, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := b.Add(tc.c)
			require.ErrorIs(t, err, tc.err)
			if tc.field != "" {
				var ie *InvalidError
				require.ErrorAs(t, err, &ie)
				require.Equal(t, tc.field, ie.Field)
			}
		})
	}
	require.Len(t, b.List(), 1, "nothing was added")

	_, err = ParseAddress("0x1234")
	require.Error(t, err)
	_, err = ParseAddress("70997970C51812dc3A010C7d01b50e0d17dc79C8")
	require.Error(t, err, "the 0x prefix is required")
	for _, ok := range []string{"0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "0x70997970c51812dc3a010c7d01b50e0d17dc79c8", "0x70997970C51812DC3A010C7D01B50E0D17DC79C8"} {
		_, err = ParseAddress(ok)
		require.NoError(t, err, ok)
	}
	_, err = ParseAddress("0x70997970c51812dc3a010c7d01b50e0d17dc79C8")
	require.ErrorContains(t, err, "0x70997970C51812dc3A010C7d01b50e0d17dc79C8 is the address with its checksum", "a mixed-case typo")

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("contacts: [{alias: x, address: 0x1, commAddress: nope}]"), 0o600))
	_, err = Load(bad)
	require.Error(t, err)
}

// flakyStorage is a file whose writes fail while broken is set.
type flakyStorage struct {
	Storage
	broken *bool
}

func (f flakyStorage) Write(data []byte) error {
	if *f.broken {
		return errors.New("disk full")
	}
	return f.Storage.Write(data)
}

// TestReplace: a contact is replaced by address in place and in one
// write; an unknown address, an alias of another contact and a failed
// write leave the book as it was.
func TestReplace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       Contact
		broken  bool
		wantErr error
	}{
		{"new peer address", Contact{"bob", addrB, "127.0.0.1:6000"}, false, nil},
		{"new alias", Contact{"robert", addrB, "127.0.0.1:5000"}, false, nil},
		{"unknown address", Contact{"carol", common.HexToAddress("0x90F79bf6EB2c4f870365E785982E1f101E93b906"), "127.0.0.1:5002"}, false, ErrNotFound},
		{"another contact's alias", Contact{"alice", addrB, "127.0.0.1:5000"}, false, ErrConflict},
		{"invalid", Contact{"bob", addrB, "no port"}, false, ErrInvalid},
		{"the write fails", Contact{"bob", addrB, "127.0.0.1:6000"}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "contacts.yaml")
			broken := false
			b, err := Open(flakyStorage{FileStorage(path), &broken}, path)
			require.NoError(t, err)
			require.NoError(t, b.Add(Contact{"bob", addrB, "127.0.0.1:5000"}))
			require.NoError(t, b.Add(Contact{"alice", addrA, "localhost:5001"}))
			before := b.List()
			broken = tc.broken
			err = b.Replace(tc.c)
			reread, lerr := Load(path)
			require.NoError(t, lerr)
			switch {
			case tc.broken:
				require.ErrorContains(t, err, "disk full")
			case tc.wantErr != nil:
				require.ErrorIs(t, err, tc.wantErr)
			default:
				require.NoError(t, err)
				got, err := b.ByAddress(addrB)
				require.NoError(t, err)
				require.Equal(t, tc.c, got)
				require.Len(t, b.List(), 2)
				require.Equal(t, b.List(), reread.List(), "written")
				return
			}
			require.Equal(t, before, b.List(), "unchanged")
			require.Equal(t, before, reread.List(), "unchanged on disk")
		})
	}
}
