package perundtest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/daemon"
	"github.com/perund/perund/peer"
)

// The test users' keys: anvil's accounts #1 and #2, alice and bob of
// perund dev.
const (
	KeyAlice = daemon.DemoKeyAlice
	KeyBob   = daemon.DemoKeyBob
)

// Cert is a self-signed certificate for 127.0.0.1: the certificate and
// key as TLS takes them, in PEM, and a pool that trusts it.
type Cert struct {
	TLS             tls.Certificate
	CertPEM, KeyPEM []byte
	Pool            *x509.CertPool
}

// SelfSigned makes a Cert (as a node makes its peer certificate:
// peer.SelfSignedPEM).
func SelfSigned(t testing.TB) Cert {
	t.Helper()
	certPEM, keyPEM, err := peer.SelfSignedPEM()
	require.NoError(t, err)
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(c.Leaf)
	return Cert{TLS: c, CertPEM: certPEM, KeyPEM: keyPEM, Pool: pool}
}

// Files writes c's certificate and key into a new temporary dir and
// returns their paths.
func (c Cert) Files(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, c.CertPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, c.KeyPEM, 0o600))
	return certFile, keyFile
}
