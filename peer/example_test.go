package peer_test

import (
	"context"
	"log"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"
	"perun.network/go-perun/wire/protobuf"

	"github.com/perund/perund/peer"
	"github.com/perund/perund/wireid"
)

// Example shows how a node and its sessions use the package: one Port and
// one Hosts table per node; per logged-in user a Listener, a Dialer and the
// user's own go-perun bus.
func Example() {
	// Node start.
	cert, err := peer.NewCertificate() // a node persists it: peer.LoadOrCreateCertificate(dataDir)
	if err != nil {
		log.Fatal(err)
	}
	port, err := peer.Listen(peer.Config{Addr: "127.0.0.1:0", Certificate: cert})
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close() // after every session
	hosts := peer.NewHosts()

	// Session start (log in).
	key, _ := crypto.GenerateKey()
	acc := wireid.NewAccount(key)
	l, err := port.Register(acc)
	if err != nil {
		log.Fatal(err)
	}
	bus := wirenet.NewBus(acc.Map(), peer.NewDialer(acc, hosts, 10*time.Second), protobuf.Serializer())
	listening := make(chan struct{})
	go func() { defer close(listening); bus.Listen(l) }()

	// A contact: every user of the peer's node is reached at its port.
	peerKey, _ := crypto.GenerateKey()
	bob := wireid.NewAccount(peerKey).Address().(*wireid.Address)
	hosts.Set(bob.Eth(), "127.0.0.1:5750")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = bus.Publish(ctx, &wire.Envelope{Sender: acc.Address().(*wireid.Address).Map(), Recipient: bob.Map(), Msg: wire.NewPingMsg()})

	// Session end (log out): closing the bus closes its Dialer and Listener,
	// which unregisters the user; the Port stays open for the others.
	_ = bus.Close()
	<-listening
}
