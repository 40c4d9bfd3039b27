// Package peer is the node's one peer port: a single TLS listener for all
// users, the routing of each incoming connection to the user it addresses,
// and a peer handshake that cannot be replayed.
//
// # One port
//
// Each user keeps a go-perun wire/net.Bus of their own (a bus has exactly one
// identity). A Port owns one TLS 1.3 listener for the node; Register gives a
// user's bus a Listener of its own. Per incoming connection the Port runs the
// TLS handshake, reads the first envelope (go-perun's authentication
// message, which names its Recipient), verifies it, and hands the
// connection to the Listener of that recipient. A connection for a user who
// is not registered, or whose handshake does not verify, is closed. The
// user's bus then runs go-perun's own address exchange on it as usual.
//
// A user's Dialer dials peers found in the node-wide Hosts table. Every user
// of a node shares the node's host:port, so peers reach any of them there.
//
// # The bound handshake
//
// go-perun's handshake signature covers only the sender's address: it is
// the same on every connection, and anyone who once received it (the
// passive side returns its own to whoever authenticates) can replay it to
// another node and pass for its owner. perund therefore sends
//
//	Signature = static(65) || bound(65)
//	bound     = Sign(ExporterLabel || exporter || sender || recipient)
//
// where static is go-perun's signature, Sign is the wireid secp256k1
// signature of the Keccak-256 hash, and exporter is the connection's TLS 1.3
// exporter, ConnectionState().ExportKeyingMaterial(ExporterLabel, nil, 32).
// Both ends of one TLS connection compute the same exporter; any other
// connection, including each half of a relaying man in the middle, has
// another, so a bound signature is valid on its own connection only, and
// only from that sender to that recipient.
//
// This is transparent to go-perun: the connection appends the bound half to
// the first envelope it sends, and verifies and strips the bound half of the
// first envelope it receives; go-perun sees and checks the static half as
// before. Both directions are bound: the Port checks the dialer's binding
// before routing, the dialer checks the reply's. After the handshake the
// connection refuses (and closes on) any envelope whose Sender or Recipient
// is not the authenticated pair, which go-perun itself never checks.
//
// Certificates are self-signed per node and not verified: TLS gives privacy
// and the exporter; identity comes from the bound signature.
//
// # Legacy peers
//
// A peer that sends only the static 65-byte signature (a bare go-perun
// client, an older perund) is refused, unless its address is listed in
// Config.LegacyPeers: its handshake is then accepted without a binding and
// answered without one, and it is as replayable as before. A Dialer always
// sends the bound signature and requires one in the reply, so it cannot
// talk to a peer without this scheme.
//
// # Limits
//
// The Port speaks go-perun's protobuf serialization only. The first frame of
// a connection is limited to 1 KiB, and everything up to the user's reply
// to Config.HandshakeTimeout. Likewise a Dialer's connection fails if the
// peer's reply is larger than 1 KiB or does not come within
// DefaultHandshakeTimeout of the dial.
package peer
