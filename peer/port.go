package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"
	"perun.network/go-perun/wire/protobuf"

	"github.com/perund/perund/wireid"
)

// Defaults of Config.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxHandshakes    = 256
)

// maxAuthFrame bounds the first frame of a connection. An authentication
// envelope (two addresses and a 130-byte signature) takes about 220 bytes.
const maxAuthFrame = 1024

// Errors of the Port and its Listeners.
var (
	// ErrClosed is returned by a closed Port, Listener or Dialer.
	ErrClosed = errors.New("peer: closed")
	// ErrRegistered is returned by Register for a user already registered.
	ErrRegistered = errors.New("peer: user already registered")
)

// Config configures a Port.
type Config struct {
	// Addr is the listen address, host:port ("127.0.0.1:0" picks a port).
	Addr string
	// Certificate is the node's TLS certificate (LoadOrCreateCertificate).
	Certificate tls.Certificate
	// HandshakeTimeout bounds everything from the TCP accept to the user's
	// authentication reply: the TLS handshake, the first frame and the wait
	// for the user's bus to accept the connection. Default 10 s.
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds the connections being authenticated at once;
	// further connections are closed at once. Default 256.
	MaxHandshakes int
	// LegacyPeers are the peers allowed to authenticate with go-perun's
	// static 65-byte signature alone (a bare go-perun client or an older
	// perund). Such a signature is replayable: anyone who once received it can
	// pose as that peer towards this node. Empty by default: every peer must
	// send the bound signature.
	LegacyPeers []common.Address
	// Log receives the reasons for refused connections. Default: discard.
	Log *slog.Logger
}

// Port is the node's one peer port: a TLS listener whose connections are
// routed to the registered user they address, after the bound handshake
// (see the package comment) has been verified. Its methods are safe for
// concurrent use.
type Port struct {
	cfg    Config
	ln     net.Listener
	tls    *tls.Config
	ser    wire.EnvelopeSerializer
	legacy map[common.Address]bool
	log    *slog.Logger
	slots  chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.RWMutex
	users map[common.Address]*Listener
	done  bool

	accepted, refused atomic.Uint64
}

// PortStats are a Port's counters since it opened.
type PortStats struct {
	// Accepted counts the connections authenticated and handed to a user.
	Accepted uint64
	// Refused counts the connections closed before reaching a user.
	Refused uint64
}

// Stats returns the Port's counters.
func (p *Port) Stats() PortStats {
	return PortStats{Accepted: p.accepted.Load(), Refused: p.refused.Load()}
}

// Listen opens the Port on cfg.Addr and starts accepting connections.
func Listen(cfg Config) (*Port, error) {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = DefaultMaxHandshakes
	}
	if len(cfg.Certificate.Certificate) == 0 {
		return nil, errors.New("peer port: no TLS certificate")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("peer port: listen on %s: %w", cfg.Addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Port{
		cfg: cfg, ln: ln, tls: serverTLS(cfg.Certificate), ser: safe(protobuf.Serializer()),
		legacy: map[common.Address]bool{}, log: log.With("component", "peer-port", "addr", ln.Addr().String()),
		slots: make(chan struct{}, cfg.MaxHandshakes), ctx: ctx, cancel: cancel,
		users: map[common.Address]*Listener{},
	}
	for _, a := range cfg.LegacyPeers {
		p.legacy[a] = true
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the address the Port listens on.
func (p *Port) Addr() net.Addr { return p.ln.Addr() }

// Register makes the Port route connections addressed to acc to the
// returned Listener, which the user's go-perun bus listens on
// (go bus.Listen(l)). The bus must use the protobuf serializer. Closing the
// Listener (the bus does so when it closes) unregisters the user; the Port
// stays open.
func (p *Port) Register(acc *wireid.Account) (*Listener, error) {
	addr := acc.Address().(*wireid.Address).Eth()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return nil, fmt.Errorf("register %s: %w", addr.Hex(), ErrClosed)
	}
	if _, ok := p.users[addr]; ok {
		return nil, fmt.Errorf("register %s: %w", addr.Hex(), ErrRegistered)
	}
	l := &Listener{port: p, acc: acc, addr: addr, accept: make(chan wirenet.Conn), done: make(chan struct{})}
	p.users[addr] = l
	return l, nil
}

// Close stops accepting, closes the connections not yet handed to a user's
// bus and waits for the Port's goroutines. The users' Listeners then fail
// their Accept calls. Connections already handed to a bus belong to it.
func (p *Port) Close() error {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return fmt.Errorf("close peer port: %w", ErrClosed)
	}
	p.done = true
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("close peer port: %w", err)
	}
	return nil
}

func (p *Port) user(addr common.Address) *Listener {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.users[addr]
}

func (p *Port) unregister(l *Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.users[l.addr] == l {
		delete(p.users, l.addr)
	}
}

func (p *Port) acceptLoop() {
	defer p.wg.Done()
	var backoff time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			// Temporary failures (out of file descriptors): back off as
			// net/http does, up to a second.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.log.Warn("accept failed", "err", err, "retryIn", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-p.ctx.Done():
				return
			}
		}
		backoff = 0
		select {
		case p.slots <- struct{}{}:
		default:
			p.log.Warn("refused connection: too many handshakes in progress", "remote", c.RemoteAddr().String(), "max", p.cfg.MaxHandshakes)
			p.refused.Add(1)
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer func() { <-p.slots }()
			p.serve(c)
		}()
	}
}

// serve authenticates one connection and hands it to the user it addresses,
// or closes it.
func (p *Port) serve(c net.Conn) {
	log := p.log.With("remote", c.RemoteAddr().String())
	deadline := time.Now().Add(p.cfg.HandshakeTimeout)
	ctx, cancel := context.WithDeadline(p.ctx, deadline)
	defer cancel()
	tc := tls.Server(c, p.tls)
	// The deadline bounds every read and write until the user's reply; the
	// Port's close interrupts them at once.
	if err := tc.SetDeadline(deadline); err != nil {
		log.Warn("refused connection", "err", err)
		c.Close()
		return
	}
	stop := context.AfterFunc(p.ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	bc, u, err := p.authenticate(ctx, tc)
	if err == nil {
		select {
		case u.accept <- bc:
			stop()
			p.accepted.Add(1)
			return
		case <-u.done:
			err = errors.New("recipient logged out")
		case <-ctx.Done():
			err = fmt.Errorf("not accepted by the recipient's bus: %w", context.Cause(ctx))
		}
	}
	stop()
	p.refused.Add(1)
	if errors.Is(err, ErrAuth) {
		log.Warn("refused connection", "err", err)
	} else {
		log.Info("refused connection", "err", err)
	}
	tc.Close()
}

// authenticate runs the TLS handshake, reads the first envelope and checks
// it (see the package comment); it returns the connection for the user.
func (p *Port) authenticate(ctx context.Context, tc *tls.Conn) (*boundConn, *Listener, error) {
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, nil, fmt.Errorf("tls handshake: %w", err)
	}
	exp, err := exporter(tc)
	if err != nil {
		return nil, nil, err
	}
	env, err := readAuthEnvelope(tc, p.ser)
	if err != nil {
		return nil, nil, err
	}
	m, ok := env.Msg.(*wire.AuthResponseMsg)
	if !ok {
		return nil, nil, fmt.Errorf("%w: first envelope is %T, want an authentication message", ErrAuth, env.Msg)
	}
	sender, err := soleAddress(env.Sender)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: sender: %v", ErrAuth, err)
	}
	recipient, err := soleAddress(env.Recipient)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: recipient: %v", ErrAuth, err)
	}
	if *sender == *recipient {
		return nil, nil, fmt.Errorf("%w: %s dialed itself", ErrAuth, sender)
	}
	legacy := false
	switch len(m.Signature) {
	case BoundSigLen:
		if err := verifyBound(exp, sender, recipient, m.Signature[wireid.SigLen:]); err != nil {
			return nil, nil, err
		}
	case wireid.SigLen:
		if !p.legacy[sender.Eth()] {
			return nil, nil, fmt.Errorf("%w: %s sent an unbound (replayable) signature", ErrAuth, sender)
		}
		legacy = true
	default:
		return nil, nil, fmt.Errorf("%w: signature of %d bytes from %s", ErrAuth, len(m.Signature), sender)
	}
	static := m.Signature[:wireid.SigLen:wireid.SigLen]
	if err := verifyStatic(sender, static); err != nil {
		return nil, nil, err
	}
	u := p.user(recipient.Eth())
	if u == nil {
		return nil, nil, fmt.Errorf("recipient %s not logged in (from %s)", recipient, sender)
	}
	if legacy {
		p.log.Warn("accepted a legacy (replayable) handshake", "peer", sender.String(), "user", recipient.String())
	}
	bc := newBoundConn(tc, p.ser, u.acc, sender, exp)
	bc.legacy = legacy
	bc.first = &wire.Envelope{Sender: env.Sender, Recipient: env.Recipient, Msg: &wire.AuthResponseMsg{Signature: static}}
	// The handshake deadline ends with the user's reply.
	bc.authSent = func() { _ = tc.SetDeadline(time.Time{}) }
	return bc, u, nil
}

// readAuthEnvelope reads and decodes the first frame of a connection:
// go-perun's protobuf framing, a big-endian uint16 length and the body, read
// in full and limited to maxAuthFrame so that nobody can make the Port wait
// for or hold a large frame before authenticating.
func readAuthEnvelope(r io.Reader, ser wire.EnvelopeSerializer) (*wire.Envelope, error) {
	var frame [2 + maxAuthFrame]byte
	if _, err := io.ReadFull(r, frame[:2]); err != nil {
		return nil, fmt.Errorf("read first frame: %w", err)
	}
	n := int(binary.BigEndian.Uint16(frame[:2]))
	if n > maxAuthFrame {
		return nil, fmt.Errorf("%w: first frame of %d bytes, at most %d", ErrAuth, n, maxAuthFrame)
	}
	if _, err := io.ReadFull(r, frame[2:2+n]); err != nil {
		return nil, fmt.Errorf("read first frame: %w", err)
	}
	env, err := ser.Decode(bytes.NewReader(frame[:2+n]))
	if err != nil {
		return nil, fmt.Errorf("%w: decode first frame: %v", ErrAuth, err)
	}
	return env, nil
}

// Listener is one user's view of the Port: the wirenet.Listener of the
// user's bus. It yields the connections addressed to that user whose
// handshake the Port has verified.
type Listener struct {
	port   *Port
	acc    *wireid.Account
	addr   common.Address
	accept chan wirenet.Conn
	once   sync.Once
	done   chan struct{}
}

var _ wirenet.Listener = (*Listener)(nil)

// Accept returns the next connection for the user. The serializer argument
// is ignored: the Port speaks protobuf (protobuf.Serializer()).
func (l *Listener) Accept(wire.EnvelopeSerializer) (wirenet.Conn, error) {
	select {
	case c := <-l.accept:
		select {
		case <-l.done:
			c.Close()
			return nil, fmt.Errorf("accept for %s: %w", l.addr.Hex(), ErrClosed)
		default:
			return c, nil
		}
	case <-l.done:
		return nil, fmt.Errorf("accept for %s: %w", l.addr.Hex(), ErrClosed)
	case <-l.port.ctx.Done():
		return nil, fmt.Errorf("accept for %s: peer port: %w", l.addr.Hex(), ErrClosed)
	}
}

// Close unregisters the user; it does not close the Port. Connections not
// yet accepted are closed by the Port. A second call returns ErrClosed.
func (l *Listener) Close() error {
	closed := false
	l.once.Do(func() {
		closed = true
		l.port.unregister(l)
		close(l.done)
	})
	if !closed {
		return fmt.Errorf("close listener of %s: %w", l.addr.Hex(), ErrClosed)
	}
	return nil
}
