package peer

import (
	"crypto/tls"
	"errors"
	"fmt"

	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"

	"github.com/perund/perund/wireid"
)

// ExporterLabel is the TLS exporter label (RFC 8446 §7.5) of the bound
// handshake. It also starts every bound message, which separates bound
// signatures from any other signature made with the same key.
const ExporterLabel = "perund-wire-auth-v1"

// exporterLen is the length of the keying material taken from the exporter.
const exporterLen = 32

// BoundSigLen is the length of a bound handshake signature: go-perun's static
// signature followed by the signature over the connection binding.
const BoundSigLen = 2 * wireid.SigLen

// ErrAuth is the cause of every refused handshake: a malformed or missing
// authentication message, a binding that does not verify, an unexpected
// sender or recipient.
var ErrAuth = errors.New("peer authentication failed")

// exporter returns the connection's keying material for the binding. The
// handshake must be complete; the connection must be TLS 1.3 (earlier
// versions without extended master secret would let a man in the middle
// make both ends' exporters equal).
func exporter(c *tls.Conn) ([]byte, error) {
	cs := c.ConnectionState()
	if !cs.HandshakeComplete {
		return nil, errors.New("tls handshake not complete")
	}
	if cs.Version < tls.VersionTLS13 {
		return nil, fmt.Errorf("tls version %#x, want TLS 1.3", cs.Version)
	}
	k, err := cs.ExportKeyingMaterial(ExporterLabel, nil, exporterLen)
	if err != nil {
		return nil, fmt.Errorf("tls exporter: %w", err)
	}
	return k, nil
}

// boundMessage is what the sender of an authentication message signs in its
// bound half: label || exporter || sender || recipient. The exporter ties it
// to one TLS connection, the two addresses to one direction between two
// identities.
func boundMessage(exp []byte, sender, recipient *wireid.Address) []byte {
	m := make([]byte, 0, len(ExporterLabel)+len(exp)+2*len(sender))
	m = append(m, ExporterLabel...)
	m = append(m, exp...)
	m = append(m, sender[:]...)
	return append(m, recipient[:]...)
}

// signBound returns the bound half for a message from acc to recipient on
// the connection with keying material exp.
func signBound(acc *wireid.Account, exp []byte, recipient *wireid.Address) ([]byte, error) {
	self := acc.Address().(*wireid.Address)
	sig, err := acc.Sign(boundMessage(exp, self, recipient))
	if err != nil {
		return nil, fmt.Errorf("sign handshake binding: %w", err)
	}
	return sig, nil
}

// verifyBound checks the bound half of an authentication message from
// sender to recipient on the connection with keying material exp.
func verifyBound(exp []byte, sender, recipient *wireid.Address, bound []byte) error {
	if err := sender.Verify(boundMessage(exp, sender, recipient), bound); err != nil {
		return fmt.Errorf("%w: binding of %s to this connection: %v", ErrAuth, sender, err)
	}
	return nil
}

// verifyStatic checks go-perun's own (replayable) half of an authentication
// message, as go-perun's ExchangeAddrsPassive does.
func verifyStatic(sender *wireid.Address, static []byte) error {
	if err := wirenet.VerifyAddressSignature(sender.Map(), static); err != nil {
		return fmt.Errorf("%w: static signature of %s: %v", ErrAuth, sender, err)
	}
	return nil
}

// soleAddress returns the only address of a go-perun address map, which must
// be perund's wire identity under wireid.BackendID.
func soleAddress(m map[wallet.BackendID]wire.Address) (*wireid.Address, error) {
	if len(m) != 1 {
		return nil, fmt.Errorf("address map with %d entries, want 1", len(m))
	}
	a, ok := m[wireid.BackendID].(*wireid.Address)
	if !ok || a == nil {
		return nil, fmt.Errorf("address map without a wire identity under backend %d", wireid.BackendID)
	}
	return a, nil
}

// checkPair reports whether an envelope goes from sender to recipient.
func checkPair(e *wire.Envelope, sender, recipient *wireid.Address) error {
	s, err := soleAddress(e.Sender)
	if err != nil {
		return fmt.Errorf("%w: sender: %v", ErrAuth, err)
	}
	r, err := soleAddress(e.Recipient)
	if err != nil {
		return fmt.Errorf("%w: recipient: %v", ErrAuth, err)
	}
	if *s != *sender || *r != *recipient {
		return fmt.Errorf("%w: envelope %s -> %s on the connection of %s -> %s", ErrAuth, s, r, sender, recipient)
	}
	return nil
}
