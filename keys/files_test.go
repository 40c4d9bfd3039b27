package keys

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Key files copied from one keystore into another (as the node shares
// them through its PostgreSQL store) unlock there with the password; a
// key the store has already is not added again, and names or contents
// that are not a plain key file are refused.
func TestFilesCopied(t *testing.T) {
	src, err := New(t.TempDir(), LightKDF)
	require.NoError(t, err)
	a, err := src.Create("pw")
	require.NoError(t, err)
	files, err := src.Files()
	require.NoError(t, err)
	require.Len(t, files, 1)
	f, err := src.FileOf(a)
	require.NoError(t, err)
	require.Equal(t, files[0], f)

	dst, err := New(t.TempDir(), LightKDF)
	require.NoError(t, err)
	added, err := dst.AddFile(f)
	require.NoError(t, err)
	require.True(t, added)
	_, err = dst.Unlock(a, "pw")
	require.NoError(t, err)
	added, err = dst.AddFile(File{Name: "other-name", Data: f.Data})
	require.NoError(t, err)
	require.False(t, added, "the address has a key already")

	for _, bad := range []File{
		{Name: "../escape", Data: f.Data},
		{Name: ".hidden", Data: f.Data},
		{Name: "x.tmp", Data: f.Data},
		{Name: "no-address", Data: []byte(`{"crypto":{}}`)},
		{Name: "not-json", Data: []byte("x")},
	} {
		_, err := dst.AddFile(bad)
		require.Error(t, err, bad.Name)
	}
}
