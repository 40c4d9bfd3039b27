package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"

	"github.com/perund/perund/wireid"
)

// ErrUnknownPeer is returned by Dial for a peer without a host in the Hosts
// table.
var ErrUnknownPeer = errors.New("peer: no host known for peer")

// Hosts is the node-wide table of where peers are reached: wire identity
// (the peer's Ethereum address) to host:port. Its methods are safe for
// concurrent use.
type Hosts struct {
	mu sync.RWMutex
	m  map[common.Address]string
}

// NewHosts returns an empty table.
func NewHosts() *Hosts { return &Hosts{m: map[common.Address]string{}} }

// Set records that peer is reached at hostPort, replacing an earlier entry.
func (h *Hosts) Set(peer common.Address, hostPort string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.m[peer] = hostPort
}

// Delete forgets peer.
func (h *Hosts) Delete(peer common.Address) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, peer)
}

// Lookup returns where peer is reached.
func (h *Hosts) Lookup(peer common.Address) (string, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	hp, ok := h.m[peer]
	return hp, ok
}

// Dialer is one user's go-perun dialer (the wirenet.Dialer of the user's
// bus): it dials peers found in a node-wide Hosts table over TLS 1.3 and
// binds the user's handshake to each connection. Closing it (the bus does
// so when it closes) aborts only this Dialer's dials.
type Dialer struct {
	acc     *wireid.Account
	hosts   *Hosts
	timeout time.Duration
	// replyTimeout bounds the peer's authentication reply after the dial.
	replyTimeout time.Duration
	dialer       tls.Dialer
	// port, if set, is the node's own Port: its users are dialled in
	// process (InProcess).
	port *Port

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
}

var _ wirenet.Dialer = (*Dialer)(nil)

// NewDialer returns a Dialer for acc over hosts. A positive timeout bounds
// each dial (TCP connect and TLS handshake) beyond the caller's context.
func NewDialer(acc *wireid.Account, hosts *Hosts, timeout time.Duration) *Dialer {
	ctx, cancel := context.WithCancel(context.Background())
	return &Dialer{
		acc: acc, hosts: hosts, timeout: timeout, replyTimeout: DefaultHandshakeTimeout,
		dialer: tls.Dialer{NetDialer: &net.Dialer{}, Config: clientTLS()},
		ctx:    ctx, cancel: cancel,
	}
}

// Dial connects to the peer addr. The connection appends the binding to the
// user's authentication message and requires the peer's, within
// DefaultHandshakeTimeout and at most 1 KiB; go-perun's address exchange
// runs over it as usual.
func (d *Dialer) Dial(ctx context.Context, addr map[wallet.BackendID]wire.Address, ser wire.EnvelopeSerializer) (wirenet.Conn, error) {
	peer, err := soleAddress(addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	if d.ctx.Err() != nil {
		return nil, fmt.Errorf("dial %s: %w", peer, ErrClosed)
	}
	if d.port != nil {
		if c, local, err := d.port.dialLocal(ctx, d.acc, peer, ser); local {
			return c, err
		}
	}
	host, ok := d.hosts.Lookup(peer.Eth())
	if !ok {
		return nil, fmt.Errorf("dial %s: %w", peer, ErrUnknownPeer)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(d.ctx, cancel)()
	if d.timeout > 0 {
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithTimeout(ctx, d.timeout)
		defer cancelT()
	}
	c, err := d.dialer.DialContext(ctx, "tcp", host)
	if err != nil {
		if d.ctx.Err() != nil {
			return nil, fmt.Errorf("dial %s at %s: %w", peer, host, ErrClosed)
		}
		return nil, fmt.Errorf("dial %s at %s: %w", peer, host, err)
	}
	tc := c.(*tls.Conn)
	exp, err := exporter(tc)
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("dial %s at %s: %w", peer, host, err)
	}
	// The peer's authentication reply must come within replyTimeout (as
	// the Port bounds the dialer's): go-perun's active address exchange
	// waits as long as the caller's context, which may be minutes.
	if err := tc.SetDeadline(time.Now().Add(d.replyTimeout)); err != nil {
		tc.Close()
		return nil, fmt.Errorf("dial %s at %s: %w", peer, host, err)
	}
	bc := newBoundConn(tc, ser, d.acc, peer, exp)
	bc.authRecvd = func() { _ = tc.SetDeadline(time.Time{}) }
	return bc, nil
}

// InProcess makes the Dialer reach the users registered on port (users of
// the same node) through an in-memory pipe instead of TCP and TLS; it
// returns d.
func (d *Dialer) InProcess(port *Port) *Dialer {
	d.port = port
	return d
}

// Close aborts the Dialer's ongoing dials; it leaves the Hosts table and
// other users' Dialers alone. A second call returns ErrClosed.
func (d *Dialer) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("close dialer: %w", ErrClosed)
	}
	d.closed = true
	d.cancel()
	return nil
}
