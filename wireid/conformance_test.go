package wireid

import (
	"math/rand"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"perun.network/go-perun/wire"
	wiretest "perun.network/go-perun/wire/test"
)

// TestGoPerunAddressSuite runs go-perun's own conformance suite for wire
// addresses (wire/test.TestAddressImplementation) on perund's: binary
// round trip, Equal and Cmp against the zero address, distinct encodings,
// perunio encode and decode.
func TestGoPerunAddressSuite(t *testing.T) {
	random := func(rng *rand.Rand) wire.Address {
		var a common.Address
		for a == (common.Address{}) {
			for i := range a {
				a[i] = byte(rng.Intn(256))
			}
		}
		return NewAddress(a)
	}
	for i := 0; i < 10; i++ {
		wiretest.TestAddressImplementation(t, func() wire.Address { return new(Address) }, random)
	}
}
