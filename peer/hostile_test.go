package peer

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"math/rand"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"
	"perun.network/go-perun/wire/protobuf"

	"github.com/perund/perund/wireid"
)

// untilClosed reads c until the other side closes it and returns how long
// that took; it fails the test if c's deadline passes first.
func untilClosed(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	require.NoError(t, c.SetDeadline(start.Add(recvTimeout)))
	_, err := io.Copy(io.Discard, c)
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "the connection was left open")
	return time.Since(start)
}

func lengthPrefix(body []byte) []byte {
	return binary.BigEndian.AppendUint16(nil, uint16(len(body))) //nolint:gosec // test bodies are small
}

// TestHostileInput: whatever a connection sends before it authenticates,
// the Port closes it, promptly or at the handshake deadline, and keeps
// serving everybody else.
func TestHostileInput(t *testing.T) {
	const hsTimeout = 600 * time.Millisecond
	n := newNode(t, func(c *Config) { c.HandshakeTimeout = hsTimeout })
	defer n.close(t)
	carol := n.login(t)
	defer carol.logout(t)
	mallory := newAccount(t)
	mAddr := mallory.Address().(*wireid.Address)
	nobody := newAccount(t).Address().(*wireid.Address)

	tlsThen := func(write func(r *rawPeer) error) func(t *testing.T) net.Conn {
		return func(t *testing.T) net.Conn {
			r := rawDial(t, n.addr())
			require.NoError(t, write(r))
			return r.tc
		}
	}
	sendEnv := func(e func(r *rawPeer) *wire.Envelope) func(t *testing.T) net.Conn {
		return tlsThen(func(r *rawPeer) error { return r.send(e(r)) })
	}
	tcpThen := func(data []byte) func(t *testing.T) net.Conn {
		return func(t *testing.T) net.Conn {
			c, err := net.Dial("tcp", n.addr())
			require.NoError(t, err)
			_, err = c.Write(data)
			require.NoError(t, err)
			return c
		}
	}
	// fast: closed at once, well before the handshake deadline.
	tests := []struct {
		name string
		do   func(t *testing.T) net.Conn
		fast bool
		why  string
	}{
		{"plain text instead of TLS", tcpThen([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), true, "tls handshake"},
		{"silent TCP", tcpThen(nil), false, "tls handshake"},
		{"TLS 1.2", func(t *testing.T) net.Conn {
			c, err := net.Dial("tcp", n.addr())
			require.NoError(t, err)
			tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}) //nolint:gosec
			require.Error(t, tc.Handshake())
			return c
		}, true, "unsupported versions"},
		{"silent after TLS", tlsThen(func(*rawPeer) error { return nil }), false, "read first frame"},
		{"slow loris: one byte of the first frame", tlsThen(func(r *rawPeer) error { _, err := r.tc.Write([]byte{0}); return err }), false, "read first frame"},
		{"slow loris: a truncated first frame", tlsThen(func(r *rawPeer) error {
			_, err := r.tc.Write(append(binary.BigEndian.AppendUint16(nil, 200), make([]byte, 50)...))
			return err
		}), false, "read first frame"},
		{"oversized first frame", tlsThen(func(r *rawPeer) error { _, err := r.tc.Write([]byte{0xFF, 0xFF}); return err }), true, "first frame of 65535 bytes"},
		{"garbage frame", tlsThen(func(r *rawPeer) error {
			body := make([]byte, 64)
			rand.New(rand.NewSource(1)).Read(body)
			_, err := r.tc.Write(append(lengthPrefix(body), body...))
			return err
		}), true, "decode first frame"},
		{"a ping first", sendEnv(func(*rawPeer) *wire.Envelope { return env(mAddr, carol.addr, wire.NewPingMsg()) }), true, "want an authentication message"},
		{"signature of 100 bytes", sendEnv(func(*rawPeer) *wire.Envelope {
			return env(mAddr, carol.addr, &wire.AuthResponseMsg{Signature: make([]byte, 100)})
		}), true, "signature of 100 bytes"},
		{"static half of another key", sendEnv(func(r *rawPeer) *wire.Envelope {
			sig := boundSig(t, mallory, r.exp, carol.addr)
			copy(sig, staticSig(t, newAccount(t)))
			return env(mAddr, carol.addr, &wire.AuthResponseMsg{Signature: sig})
		}), true, "static signature"},
		{"binding to another recipient", sendEnv(func(r *rawPeer) *wire.Envelope {
			return env(mAddr, carol.addr, &wire.AuthResponseMsg{Signature: boundSig(t, mallory, r.exp, nobody)})
		}), true, "binding"},
		{"recipient not registered", sendEnv(func(r *rawPeer) *wire.Envelope { return r.auth(t, mallory, nobody) }), true, "not logged in"},
		{"two recipients", sendEnv(func(r *rawPeer) *wire.Envelope {
			e := r.auth(t, mallory, carol.addr)
			e.Recipient = map[wallet.BackendID]wire.Address{0: carol.addr, 1: nobody}
			return e
		}), true, "recipient: address map with 2 entries"},
		{"no sender", sendEnv(func(r *rawPeer) *wire.Envelope {
			e := r.auth(t, mallory, carol.addr)
			e.Sender = map[wallet.BackendID]wire.Address{}
			return e
		}), true, "sender: address map with 0 entries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.do(t)
			defer c.Close()
			took := untilClosed(t, c)
			if tc.fast {
				require.Less(t, took, hsTimeout/2, "closed at once")
			} else {
				require.GreaterOrEqual(t, took, hsTimeout/2, "closed at the deadline, not before")
				require.Less(t, took, hsTimeout+time.Second, "closed at the deadline")
			}
			n.log.waitLog(t, tc.why)
			carol.expectNothing(t, 10*time.Millisecond)
		})
	}

	t.Run("the Port still serves", func(t *testing.T) {
		r := rawDial(t, n.addr())
		defer r.close()
		require.NoError(t, r.send(r.auth(t, mallory, carol.addr)))
		_, err := r.recv()
		require.NoError(t, err)
		require.NoError(t, r.send(env(mAddr, carol.addr, wire.NewPingMsg())))
		carol.expect(t, mAddr)
	})
}

// TestMaxHandshakes: connections beyond the limit of handshakes in progress
// are closed at once.
func TestMaxHandshakes(t *testing.T) {
	n := newNode(t, func(c *Config) { c.MaxHandshakes = 2; c.HandshakeTimeout = 2 * time.Second })
	defer n.close(t)
	for range 2 {
		c, err := net.Dial("tcp", n.addr())
		require.NoError(t, err)
		defer c.Close()
	}
	require.Eventually(t, func() bool { return len(n.port.slots) == 2 }, recvTimeout, time.Millisecond)
	c, err := net.Dial("tcp", n.addr())
	require.NoError(t, err)
	defer c.Close()
	require.Less(t, untilClosed(t, c), time.Second)
	n.log.waitLog(t, "too many handshakes")
}

// TestPortClose: closing the Port closes connections still in their
// handshake or waiting for a bus to accept them, at once.
func TestPortClose(t *testing.T) {
	n := newNode(t, nil) // 10 s handshake timeout
	acc := newAccount(t)
	l, err := n.port.Register(acc) // nobody accepts
	require.NoError(t, err)
	silent, err := net.Dial("tcp", n.addr())
	require.NoError(t, err)
	defer silent.Close()
	waiting := rawDial(t, n.addr())
	defer waiting.close()
	require.NoError(t, waiting.send(waiting.auth(t, newAccount(t), acc.Address().(*wireid.Address))))
	require.Eventually(t, func() bool { return len(n.port.slots) == 2 }, recvTimeout, time.Millisecond)

	start := time.Now()
	n.close(t)
	require.Less(t, time.Since(start), time.Second)
	require.Less(t, untilClosed(t, silent), time.Second)
	waiting.requireClosed(t)
	_, err = l.Accept(protobuf.Serializer())
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, l.Close())
	_, err = net.Dial("tcp", n.addr())
	require.Error(t, err, "nothing listens any more")
}

// TestRegisterRace: bob logs in and out over and over while others dial
// him; every dial ends (answered or closed) and nothing races.
func TestRegisterRace(t *testing.T) {
	n := newNode(t, func(c *Config) { c.HandshakeTimeout = 2 * time.Second })
	defer n.close(t)
	bob := newAccount(t)
	bobAddr := bob.Address().(*wireid.Address)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	wg.Add(1)
	go func() { // bob's sessions
		defer wg.Done()
		rng := rand.New(rand.NewSource(2))
		for {
			select {
			case <-stop:
				return
			default:
			}
			l, err := n.port.Register(bob)
			if err != nil {
				errs <- err
				return
			}
			bus := wirenet.NewBus(bob.Map(), NewDialer(bob, n.hosts, time.Second), protobuf.Serializer())
			listening := make(chan struct{})
			go func() { defer close(listening); bus.Listen(l) }()
			time.Sleep(time.Duration(rng.Intn(3000)) * time.Microsecond)
			_ = bus.Close()
			<-listening
		}
	}()
	const dialers, dials = 4, 15
	var answered, refused sync.Map
	var dwg sync.WaitGroup
	for i := range dialers {
		acc := newAccount(t)
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			for j := range dials {
				d := tls.Dialer{Config: clientTLS()}
				ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
				c, err := d.DialContext(ctx, "tcp", n.addr())
				cancel()
				if err != nil {
					errs <- err
					return
				}
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(recvTimeout))
				exp, err := exporter(tc)
				if err != nil {
					errs <- err
					tc.Close()
					return
				}
				r := &rawPeer{tc: tc, exp: exp}
				b, err := signBound(acc, exp, bobAddr)
				if err != nil {
					errs <- err
					tc.Close()
					return
				}
				m, _ := wire.NewAuthResponseMsg(acc.Map(), wireid.BackendID)
				sig := append(m.(*wire.AuthResponseMsg).Signature, b...)
				if err := r.send(env(acc.Address().(*wireid.Address), bobAddr, &wire.AuthResponseMsg{Signature: sig})); err != nil {
					errs <- err
					tc.Close()
					return
				}
				_, err = r.recv()
				tc.Close()
				switch {
				case err == nil:
					answered.Store([2]int{i, j}, true)
				case errors.Is(err, os.ErrDeadlineExceeded):
					errs <- errors.New("a dial was left hanging")
					return
				default:
					refused.Store([2]int{i, j}, true)
				}
			}
		}()
	}
	dwg.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	count := func(m *sync.Map) (k int) {
		m.Range(func(any, any) bool { k++; return true })
		return k
	}
	t.Logf("answered %d, refused %d of %d", count(&answered), count(&refused), dialers*dials)
	require.Equal(t, dialers*dials, count(&answered)+count(&refused))
}
