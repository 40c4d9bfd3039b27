package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"
	plog "perun.network/go-perun/log"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"
	"perun.network/go-perun/wire/protobuf"

	"github.com/perund/perund/internal/leaktest"
	"github.com/perund/perund/wireid"
)

// recvTimeout bounds every receive that is expected to succeed.
const recvTimeout = 5 * time.Second

// TestMain silences go-perun's logger (its client package installs logrus,
// which reports every closed connection as an error) unless
// PERUND_TEST_GOPERUN_LOG is set, and checks for leaked goroutines.
func TestMain(m *testing.M) {
	if os.Getenv("PERUND_TEST_GOPERUN_LOG") == "" {
		plog.Set(nil)
	}
	leaktest.VerifyTestMain(m)
}

// logBuf collects a Port's log lines so that tests can check why a
// connection was refused.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitLog waits until the log contains s.
func (l *logBuf) waitLog(t *testing.T, s string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(l.String(), s) }, recvTimeout, 10*time.Millisecond,
		"log never contained %q; log:\n%s", s, l.String())
}

// testNode is one perund node: a Port and the node's Hosts table.
type testNode struct {
	port  *Port
	hosts *Hosts
	log   *logBuf
}

// newNode opens a Port on loopback; mod may change the configuration.
func newNode(t *testing.T, mod func(*Config)) *testNode {
	t.Helper()
	cert, err := NewCertificate()
	require.NoError(t, err)
	lb := &logBuf{}
	cfg := Config{Addr: "127.0.0.1:0", Certificate: cert, Log: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mod != nil {
		mod(&cfg)
	}
	p, err := Listen(cfg)
	require.NoError(t, err)
	return &testNode{port: p, hosts: NewHosts(), log: lb}
}

func (n *testNode) addr() string { return n.port.Addr().String() }

func (n *testNode) close(t *testing.T) {
	t.Helper()
	require.NoError(t, n.port.Close())
}

// testUser is a user logged in at a node: a go-perun net.Bus over the
// node's Port and a Dialer of its own.
type testUser struct {
	acc    *wireid.Account
	addr   *wireid.Address
	bus    *wirenet.Bus
	recv   *wire.Receiver
	ln     *Listener
	listen chan struct{} // closed when bus.Listen returns
}

func newAccount(t *testing.T) *wireid.Account {
	t.Helper()
	k, err := crypto.GenerateKey()
	require.NoError(t, err)
	return wireid.NewAccount(k)
}

// login registers a fresh account at n and starts its bus.
func (n *testNode) login(t *testing.T) *testUser {
	t.Helper()
	return n.loginAs(t, newAccount(t))
}

func (n *testNode) loginAs(t *testing.T, acc *wireid.Account) *testUser {
	t.Helper()
	ln, err := n.port.Register(acc)
	require.NoError(t, err)
	u := &testUser{acc: acc, addr: acc.Address().(*wireid.Address), ln: ln, recv: wire.NewReceiver(), listen: make(chan struct{})}
	u.bus = wirenet.NewBus(acc.Map(), NewDialer(acc, n.hosts, 2*time.Second), protobuf.Serializer())
	go func() {
		defer close(u.listen)
		u.bus.Listen(ln)
	}()
	require.NoError(t, u.bus.SubscribeClient(u.recv, u.addr.Map()))
	return u
}

// logout stops the user's bus (which unregisters it from the Port).
func (u *testUser) logout(t *testing.T) {
	t.Helper()
	require.NoError(t, u.recv.Close())
	_ = u.bus.Close() // go-perun reports the listener's "use of closed" here
	select {
	case <-u.listen:
	case <-time.After(recvTimeout):
		t.Fatal("bus.Listen did not return after bus.Close")
	}
}

// know tells n's Hosts where u is reached.
func (n *testNode) know(u *testUser, at *testNode) { n.hosts.Set(u.addr.Eth(), at.addr()) }

func env(from, to *wireid.Address, m wire.Msg) *wire.Envelope {
	return &wire.Envelope{Sender: from.Map(), Recipient: to.Map(), Msg: m}
}

// publish sends a ping from u to peer over u's bus.
func (u *testUser) publish(ctx context.Context, to *wireid.Address, m wire.Msg) error {
	return u.bus.Publish(ctx, env(u.addr, to, m))
}

// expect receives the next envelope of u and checks its sender.
func (u *testUser) expect(t *testing.T, from *wireid.Address) *wire.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	e, err := u.recv.Next(ctx)
	require.NoError(t, err, "%s received nothing from %s", u.addr, from)
	s, err := soleAddress(e.Sender)
	require.NoError(t, err)
	require.Equal(t, *from, *s, "sender")
	r, err := soleAddress(e.Recipient)
	require.NoError(t, err)
	require.Equal(t, *u.addr, *r, "recipient")
	return e
}

// expectNothing checks that u receives nothing for a while.
func (u *testUser) expectNothing(t *testing.T, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	e, err := u.recv.Next(ctx)
	require.Error(t, err, "%s received %T from %v", u.addr, msgOf(e), senderOf(e))
}

func msgOf(e *wire.Envelope) wire.Msg {
	if e == nil {
		return nil
	}
	return e.Msg
}

func senderOf(e *wire.Envelope) map[wallet.BackendID]wire.Address {
	if e == nil {
		return nil
	}
	return e.Sender
}

// rawPeer is a hand-driven TLS client that speaks the wire protocol
// directly, for attackers and malformed input.
type rawPeer struct {
	tc  *tls.Conn
	exp []byte
}

func rawDial(t *testing.T, addr string) *rawPeer {
	t.Helper()
	d := tls.Dialer{Config: clientTLS()}
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	tc := c.(*tls.Conn)
	require.NoError(t, tc.SetDeadline(time.Now().Add(recvTimeout)))
	exp, err := exporter(tc)
	require.NoError(t, err)
	return &rawPeer{tc: tc, exp: exp}
}

func (r *rawPeer) send(e *wire.Envelope) error { return protobuf.Serializer().Encode(r.tc, e) }

func (r *rawPeer) recv() (*wire.Envelope, error) {
	return protobuf.Serializer().Decode(fullReader{r.tc})
}

func (r *rawPeer) close() { r.tc.Close() }

// auth returns acc's authentication message to recipient as perund sends
// it on r: static || bound.
func (r *rawPeer) auth(t *testing.T, acc *wireid.Account, to *wireid.Address) *wire.Envelope {
	t.Helper()
	return env(acc.Address().(*wireid.Address), to, &wire.AuthResponseMsg{Signature: boundSig(t, acc, r.exp, to)})
}

func staticSig(t *testing.T, acc *wireid.Account) []byte {
	t.Helper()
	m, err := wire.NewAuthResponseMsg(acc.Map(), wireid.BackendID)
	require.NoError(t, err)
	return m.(*wire.AuthResponseMsg).Signature
}

func boundSig(t *testing.T, acc *wireid.Account, exp []byte, to *wireid.Address) []byte {
	t.Helper()
	b, err := signBound(acc, exp, to)
	require.NoError(t, err)
	return append(staticSig(t, acc), b...)
}

// requireClosed checks that the other side closes r (before r's deadline).
func (r *rawPeer) requireClosed(t *testing.T) {
	t.Helper()
	e, err := r.recv()
	require.Error(t, err, "connection was accepted: got %T from %v", msgOf(e), senderOf(e))
	require.NotContains(t, err.Error(), "timeout", "the connection was left open")
}
