package keys

import (
	"os"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"
)

func TestRoundTrip(t *testing.T) {
	s, err := New(t.TempDir(), LightKDF)
	require.NoError(t, err)
	a, err := s.Create("pw-a")
	require.NoError(t, err)
	k, err := crypto.HexToECDSA("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
	require.NoError(t, err)
	b, err := s.Import(k, "pw-b")
	require.NoError(t, err)
	require.Equal(t, "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", b.Hex())

	list, err := s.List()
	require.NoError(t, err)
	require.ElementsMatch(t, list, []any{a, b})

	// A second store over the same directory sees the same keys.
	s2, err := New(s.Dir(), LightKDF)
	require.NoError(t, err)
	got, err := s2.Unlock(b, "pw-b")
	require.NoError(t, err)
	require.Equal(t, crypto.FromECDSA(k), crypto.FromECDSA(got))

	tests := []struct {
		name string
		addr string
		pw   string
		err  error
	}{
		{"wrong password", b.Hex(), "nope", ErrWrongPassword},
		{"unknown account", "0x000000000000000000000000000000000000dEaD", "pw", ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s2.Unlock(hexAddr(tc.addr), tc.pw)
			require.ErrorIs(t, err, tc.err)
		})
	}
	_, err = s.Import(k, "again")
	require.ErrorIs(t, err, ErrExists)
}

// TestIndexSeesOtherWriters: a key imported or removed through another
// Store on the same directory (another process: perund keys import while
// the node runs) is seen by the first one's index at the next lookup.
func TestIndexSeesOtherWriters(t *testing.T) {
	dir := t.TempDir()
	a, err := New(dir, LightKDF)
	require.NoError(t, err)
	b, err := New(dir, LightKDF)
	require.NoError(t, err)
	first, err := a.Create("pw")
	require.NoError(t, err)
	require.True(t, a.Has(first))
	second, err := b.Create("pw")
	require.NoError(t, err)
	require.True(t, a.Has(second), "added by another writer")
	list, err := a.List()
	require.NoError(t, err)
	require.Len(t, list, 2)
	path, err := b.find(second)
	require.NoError(t, err)
	require.NoError(t, os.Remove(path))
	require.False(t, a.Has(second), "removed by another writer")
	_, err = a.Unlock(first, "pw")
	require.NoError(t, err)
}
