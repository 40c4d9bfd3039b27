package peer

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"

	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"

	"github.com/perund/perund/wireid"
)

// dialLocal connects self to peer without leaving the process when peer
// is a user registered on p: an in-memory pipe, with go-perun's framing
// and address exchange over it but no TCP, TLS or bound handshake (both
// ends are in this process, nothing can be replayed or relayed). It
// reports false when peer is not registered here.
func (p *Port) dialLocal(ctx context.Context, self *wireid.Account, peer *wireid.Address, ser wire.EnvelopeSerializer) (wirenet.Conn, bool, error) {
	l := p.user(peer.Eth())
	if l == nil {
		return nil, false, nil
	}
	selfAddr := self.Address().(*wireid.Address)
	a, b := net.Pipe()
	ser = safe(ser)
	mine := &localConn{conn: wirenet.NewIoConn(fullPipe{a}, ser), from: peer, to: selfAddr}
	theirs := &localConn{conn: wirenet.NewIoConn(fullPipe{b}, ser), from: selfAddr, to: peer}
	select {
	case l.accept <- theirs:
		return mine, true, nil
	case <-l.done:
	case <-p.ctx.Done():
	case <-ctx.Done():
		a.Close()
		b.Close()
		return nil, true, fmt.Errorf("dial %s in process: %w", peer, ctx.Err())
	}
	a.Close()
	b.Close()
	return nil, true, fmt.Errorf("dial %s in process: %w", peer, ErrClosed)
}

// localConn is one end of an in-process connection between two users of
// a node. Like a bound connection it carries only envelopes between its
// pair: anything else closes it.
type localConn struct {
	conn     wirenet.Conn
	from, to *wireid.Address // the pair of what this end receives
	once     sync.Once
}

var _ wirenet.Conn = (*localConn)(nil)

// Send sends an envelope to the other end.
func (c *localConn) Send(e *wire.Envelope) error { return c.conn.Send(e) }

// Recv receives the next envelope and checks its sender and recipient.
func (c *localConn) Recv() (*wire.Envelope, error) {
	e, err := c.conn.Recv()
	if err != nil {
		return nil, err
	}
	if err := checkPair(e, c.from, c.to); err != nil {
		c.Close()
		return nil, fmt.Errorf("recv: %w", err)
	}
	return e, nil
}

// Close closes this end (the other end's reads then fail). A second call
// does nothing: go-perun's bus closes a connection from its endpoint and
// again from its registry when it shuts down, and the node reports close
// errors.
func (c *localConn) Close() error {
	var err error
	c.once.Do(func() { err = c.conn.Close() })
	return err
}

// fullPipe makes every Read fill its buffer (go-perun's decoder reads a
// frame's body with one Read; a pipe returns what one Write gave).
type fullPipe struct{ net.Conn }

func (p fullPipe) Read(b []byte) (int, error) { return io.ReadFull(p.Conn, b) }
