// Package wireid is perund's off-chain (wire) identity: a go-perun
// wire.Address and wire.Account backed by a user's Ethereum key.
//
// The eth backend's own wire address cannot be decoded from the wire and
// authenticates nobody (its signature is a constant). This package signs the
// go-perun handshake with a real secp256k1 signature over the Keccak-256 hash
// of the message and verifies it by recovering the signer's address.
package wireid

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"fmt"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"

	// Imported so that its init, which installs its own address factory, runs
	// before ours and cannot override it.
	_ "perun.network/go-perun/wire/net/simple"
)

// BackendID is the key under which the identity appears in go-perun's
// wire-address maps. A net.Bus requires key 0.
const BackendID wallet.BackendID = 0

// SigLen is the length of a signature produced by Account.Sign.
const SigLen = crypto.SignatureLength

// ErrBadSignature is returned by Address.Verify for a signature that was not
// made by the address's key.
var ErrBadSignature = errors.New("signature does not match the address")

func init() {
	wire.SetNewAddressFunc(func() wire.Address { return new(Address) })
}

// Address is a wire address: the 20-byte Ethereum address of the user.
type Address common.Address

var _ wire.Address = (*Address)(nil)

// NewAddress returns the wire address of an Ethereum address.
func NewAddress(a common.Address) *Address {
	w := Address(a)
	return &w
}

// Map returns the go-perun wire-address map holding only this address.
func (a *Address) Map() map[wallet.BackendID]wire.Address {
	return map[wallet.BackendID]wire.Address{BackendID: a}
}

// Eth returns the Ethereum address.
func (a *Address) Eth() common.Address { return common.Address(*a) }

// String returns the EIP-55 checksummed hex form.
func (a *Address) String() string { return common.Address(*a).Hex() }

// MarshalBinary encodes the address as its 20 raw bytes.
func (a *Address) MarshalBinary() ([]byte, error) {
	b := make([]byte, common.AddressLength)
	copy(b, a[:])
	return b, nil
}

// UnmarshalBinary decodes 20 raw bytes.
func (a *Address) UnmarshalBinary(data []byte) error {
	if len(data) != common.AddressLength {
		return fmt.Errorf("wire address: want %d bytes, got %d", common.AddressLength, len(data))
	}
	copy(a[:], data)
	return nil
}

// Equal reports whether b is the same wire address.
func (a *Address) Equal(b wire.Address) bool {
	o, ok := b.(*Address)
	return ok && *o == *a
}

// Cmp orders addresses bytewise. It panics for a foreign address type, as
// go-perun's own address types do.
func (a *Address) Cmp(b wire.Address) int {
	o, ok := b.(*Address)
	if !ok {
		panic(fmt.Sprintf("wireid: cannot compare with %T", b))
	}
	return bytes.Compare(a[:], o[:])
}

// Verify checks that sig is a signature of msg made by this address's key.
// It accepts exactly SigLen bytes: the peer package's bound handshake
// signatures (static || bound, twice as long) are split by the connection,
// which verifies the bound half itself and passes only the static half on
// to go-perun, so no appended bytes are ever ignored here.
func (a *Address) Verify(msg, sig []byte) error {
	if len(sig) != SigLen {
		return fmt.Errorf("verify wire signature: %w: length %d", ErrBadSignature, len(sig))
	}
	pub, err := crypto.SigToPub(crypto.Keccak256(msg), sig)
	if err != nil {
		return fmt.Errorf("verify wire signature: %w: %v", ErrBadSignature, err)
	}
	if crypto.PubkeyToAddress(*pub) != common.Address(*a) {
		return fmt.Errorf("verify wire signature of %s: %w", a, ErrBadSignature)
	}
	return nil
}

// Account is a wire account: it signs with the user's Ethereum key.
type Account struct {
	key  *ecdsa.PrivateKey
	addr *Address
	// gate, if set, must allow every signature (WithGate).
	gate func() error
}

var _ wire.Account = (*Account)(nil)

// NewAccount returns the wire account of an Ethereum private key.
func NewAccount(key *ecdsa.PrivateKey) *Account {
	return &Account{key: key, addr: NewAddress(crypto.PubkeyToAddress(key.PublicKey))}
}

// WithGate returns the account signing only while gate returns nil (a
// cluster node: while it holds the lease).
func (a *Account) WithGate(gate func() error) *Account {
	return &Account{key: a.key, addr: a.addr, gate: gate}
}

// Allowed returns nil if the account's gate (WithGate) allows it to act
// now; the peer port asks before it sends anything signed.
func (a *Account) Allowed() error {
	if a.gate == nil {
		return nil
	}
	return a.gate()
}

// Address returns the account's wire address.
func (a *Account) Address() wire.Address { return a.addr }

// Map returns the go-perun identity map of a net.Bus for this account.
func (a *Account) Map() map[wallet.BackendID]wire.Account {
	return map[wallet.BackendID]wire.Account{BackendID: a}
}

// Sign signs the Keccak-256 hash of msg.
func (a *Account) Sign(msg []byte) ([]byte, error) {
	if a.gate != nil {
		if err := a.gate(); err != nil {
			return nil, fmt.Errorf("sign wire message: %w", err)
		}
	}
	sig, err := crypto.Sign(crypto.Keccak256(msg), a.key)
	if err != nil {
		return nil, fmt.Errorf("sign wire message: %w", err)
	}
	return sig, nil
}
