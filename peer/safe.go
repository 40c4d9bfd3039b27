package peer

import (
	"errors"
	"fmt"
	"io"

	"perun.network/go-perun/wire"
)

// ErrMalformed is returned for an envelope that cannot be decoded.
var ErrMalformed = errors.New("malformed envelope")

// safeSerializer turns a panic while decoding an envelope into an error.
// go-perun's protobuf decoder dereferences nil for an address or asset of a
// backend id that is not registered (wire/protobuf/proposalmsgs.go: one
// crafted proposal, before or after authentication, would end the whole
// process); the connection that sent it is closed instead.
type safeSerializer struct{ wire.EnvelopeSerializer }

func (s safeSerializer) Decode(r io.Reader) (env *wire.Envelope, err error) {
	defer func() {
		if p := recover(); p != nil {
			env, err = nil, fmt.Errorf("%w: %v", ErrMalformed, p)
		}
	}()
	return s.EnvelopeSerializer.Decode(r)
}

// SafeSerializer wraps ser so that decoding an envelope never panics: a
// frame go-perun's decoder cannot take is an error (ErrMalformed), and the
// connection that sent it is closed.
func SafeSerializer(ser wire.EnvelopeSerializer) wire.EnvelopeSerializer { return safe(ser) }

// safe wraps ser so that decoding never panics.
func safe(ser wire.EnvelopeSerializer) wire.EnvelopeSerializer {
	if s, ok := ser.(safeSerializer); ok {
		return s
	}
	return safeSerializer{ser}
}
