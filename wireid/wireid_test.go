package wireid

import (
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/wire"
)

func TestSignVerify(t *testing.T) {
	k1, err := crypto.GenerateKey()
	require.NoError(t, err)
	k2, err := crypto.GenerateKey()
	require.NoError(t, err)
	a1, a2 := NewAccount(k1), NewAccount(k2)
	msg := []byte("hello perun")
	sig, err := a1.Sign(msg)
	require.NoError(t, err)

	tests := []struct {
		name string
		addr wire.Address
		msg  []byte
		sig  []byte
		ok   bool
	}{
		{"own signature", a1.Address(), msg, sig, true},
		{"other address", a2.Address(), msg, sig, false},
		{"other message", a1.Address(), []byte("other"), sig, false},
		{"short signature", a1.Address(), msg, sig[:10], false},
		{"signature with bytes appended", a1.Address(), msg, append(append([]byte{}, sig...), sig...), false},
		{"constant signature", a1.Address(), msg, []byte("Authenticate"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.addr.Verify(tc.msg, tc.sig)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrBadSignature)
			}
		})
	}
}

func TestAddressCodec(t *testing.T) {
	k, err := crypto.GenerateKey()
	require.NoError(t, err)
	a := NewAccount(k).Address()
	b, err := a.MarshalBinary()
	require.NoError(t, err)
	dec := wire.NewAddress()
	require.IsType(t, &Address{}, dec, "the global wire address factory must be ours")
	require.NoError(t, dec.UnmarshalBinary(b))
	require.True(t, a.Equal(dec))
	require.Equal(t, 0, a.Cmp(dec))
	require.Error(t, dec.UnmarshalBinary(b[:5]))
}
