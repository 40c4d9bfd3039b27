package peer

import (
	"crypto/tls"
	"fmt"
	"io"
	"sync"

	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"

	"github.com/perund/perund/wireid"
)

// boundConn is a go-perun connection whose authentication messages carry the
// bound half (see the package comment) and which, once authenticated, only
// carries envelopes between the authenticated pair.
//
// go-perun's own address exchange runs on top of it unchanged: the first
// Send gets the bound half appended, the first Recv has it verified and
// stripped, so go-perun sees and checks its usual 65-byte static signature.
type boundConn struct {
	raw  *tls.Conn
	conn wirenet.Conn // go-perun's framing over raw

	self     *wireid.Account
	selfAddr *wireid.Address
	peer     *wireid.Address
	exp      []byte
	// legacy: the peer authenticated with the static half only (passive side,
	// allowlisted peers); the reply carries the static half only as well.
	legacy bool
	// authSent runs after the first Send (the passive side clears the
	// handshake deadline there).
	authSent func()
	// authRecvd runs once the peer's authentication reply verified (the
	// active side clears its handshake deadline there).
	authRecvd func()
	ser       wire.EnvelopeSerializer

	sendMu   sync.Mutex
	sentAuth bool

	recvMu   sync.Mutex
	recvAuth bool
	// first is the authentication message the Port already read and verified
	// (passive side), returned by the first Recv.
	first *wire.Envelope
}

var _ wirenet.Conn = (*boundConn)(nil)

func newBoundConn(raw *tls.Conn, ser wire.EnvelopeSerializer, self *wireid.Account, peer *wireid.Address, exp []byte) *boundConn {
	ser = safe(ser)
	return &boundConn{
		raw:      raw,
		ser:      ser,
		conn:     wirenet.NewIoConn(fullReader{raw}, ser),
		self:     self,
		selfAddr: self.Address().(*wireid.Address),
		peer:     peer,
		exp:      exp,
	}
}

// Send sends an envelope from self to the peer. The first one must be the
// authentication message of go-perun's address exchange.
func (c *boundConn) Send(e *wire.Envelope) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	// A cluster node whose lease expired sends nothing, not even what it
	// signed before (it may have been paused between signing and sending).
	if err := c.self.Allowed(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if err := checkPair(e, c.selfAddr, c.peer); err != nil {
		c.Close()
		return fmt.Errorf("send: %w", err)
	}
	if c.sentAuth {
		return c.conn.Send(e)
	}
	c.sentAuth = true
	if c.authSent != nil {
		defer c.authSent()
	}
	m, ok := e.Msg.(*wire.AuthResponseMsg)
	if !ok {
		c.Close()
		return fmt.Errorf("send: %w: first envelope is %T, want an authentication message", ErrAuth, e.Msg)
	}
	sig := m.Signature
	if !c.legacy {
		if len(sig) != wireid.SigLen {
			c.Close()
			return fmt.Errorf("send: %w: static signature of %d bytes", ErrAuth, len(sig))
		}
		bound, err := signBound(c.self, c.exp, c.peer)
		if err != nil {
			c.Close()
			return fmt.Errorf("send: %w", err)
		}
		sig = append(append(make([]byte, 0, BoundSigLen), sig...), bound...)
	}
	return c.conn.Send(&wire.Envelope{Sender: e.Sender, Recipient: e.Recipient, Msg: &wire.AuthResponseMsg{Signature: sig}})
}

// Recv receives an envelope from the peer to self. The first one must be the
// peer's authentication message with a valid binding.
func (c *boundConn) Recv() (*wire.Envelope, error) {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	if c.first != nil {
		e := c.first
		c.first, c.recvAuth = nil, true
		return e, nil
	}
	var e *wire.Envelope
	var err error
	if c.recvAuth {
		e, err = c.conn.Recv()
	} else {
		// The peer's reply, bounded in size like the Port's first frame:
		// garbage with a large length prefix fails at once instead of
		// waiting for a body that never comes.
		e, err = readAuthEnvelope(c.raw, c.ser)
	}
	if err != nil {
		return nil, err
	}
	if err := checkPair(e, c.peer, c.selfAddr); err != nil {
		c.Close()
		return nil, fmt.Errorf("recv: %w", err)
	}
	if c.recvAuth {
		return e, nil
	}
	c.recvAuth = true
	m, ok := e.Msg.(*wire.AuthResponseMsg)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("recv: %w: first envelope is %T, want an authentication message", ErrAuth, e.Msg)
	}
	if len(m.Signature) != BoundSigLen {
		c.Close()
		return nil, fmt.Errorf("recv: %w: signature of %d bytes from %s, want %d (a peer without the bound handshake?)",
			ErrAuth, len(m.Signature), c.peer, BoundSigLen)
	}
	if err := verifyBound(c.exp, c.peer, c.selfAddr, m.Signature[wireid.SigLen:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("recv: %w", err)
	}
	if c.authRecvd != nil {
		c.authRecvd()
	}
	// go-perun verifies the static half itself.
	return &wire.Envelope{Sender: e.Sender, Recipient: e.Recipient,
		Msg: &wire.AuthResponseMsg{Signature: m.Signature[:wireid.SigLen:wireid.SigLen]}}, nil
}

// Close closes the connection; a second call returns an error.
func (c *boundConn) Close() error { return c.conn.Close() }

// fullReader makes every Read fill its buffer. go-perun's protobuf decoder
// reads a frame's body with a single Read, and a TLS connection returns at
// most one record per Read: records are small (about 1.2 KiB) at the start of
// a connection, so without this any larger envelope would be cut.
type fullReader struct{ *tls.Conn }

func (r fullReader) Read(p []byte) (int, error) { return io.ReadFull(r.Conn, p) }
