package node

import (
	"context"
	"errors"
	"net"
	"strings"

	"perun.network/go-perun/channel"
	"perun.network/go-perun/client"
)

// failure is what perund makes of an error that go-perun or the chain
// returned.
type failure int

const (
	failUnknown         failure = iota
	failPeerRejected            // the peer answered no (client.PeerRejectedError)
	failPeerNoAnswer            // the peer did not answer in time (client.RequestTimedOutError)
	failPeerDepositLate         // the peer's deposit did not come within the challenge duration
	failFunding                 // our own funding failed (a deposit transaction)
	failPeerUnreachable         // the message could not be sent to the peer
	failDeadline                // our own deadline passed
	failClosedConn              // a connection or bus that was already closed
)

// go-perun messages that carry no error type of their own (checked against
// go-perun v0.15.0 by TestGoPerunMessages, which reads go-perun's source so
// that an upgrade that rewords one fails a test instead of turning a user's
// peer error into an internal error).
const (
	msgPublishProposal = "publishing channel proposal" // client/proposal.go, wraps a failed Bus.Publish
	msgSendingUpdate   = "sending update"              // client/update.go, wraps a failed Bus.Publish
	msgPublishEnvelope = "publishing"                  // wire/net/bus.go "publishing %T envelope"
	msgDeadline        = "context deadline exceeded"   // a ctx error formatted with %v somewhere below go-perun
	msgClosedConn      = "use of closed network connection"
	// msgClosedTwice is a go-perun connection's Close of a connection
	// closed already (wire/net/ioconn.go): at a session's shutdown the bus
	// closes each peer's endpoint, and one the peer closed meanwhile
	// answers so.
	msgClosedTwice = "already closed"
)

// classify tells what kind of failure err is. Typed checks come first;
// go-perun's untyped messages are checked by name only where no type exists.
// The order matters: a funding timeout is also a funding error, and a dial
// that timed out also wraps a deadline.
func classify(err error) failure {
	if err == nil {
		return failUnknown
	}
	var (
		rej  client.PeerRejectedError
		rto  client.RequestTimedOutError
		fto  channel.FundingTimeoutError
		fund *client.ChannelFundingError
		op   *net.OpError
	)
	msg := err.Error()
	switch {
	case errors.As(err, &rej):
		return failPeerRejected
	case errors.As(err, &fto):
		return failPeerDepositLate
	case errors.As(err, &fund):
		// ChannelFundingError has no Unwrap: look into its Err.
		if fund.Err != nil && errors.As(fund.Err, &fto) {
			return failPeerDepositLate
		}
		return failFunding
	case errors.As(err, &rto):
		return failPeerNoAnswer
	case errors.As(err, &op) && op.Op == "dial",
		strings.Contains(msg, msgPublishProposal), strings.Contains(msg, msgSendingUpdate),
		strings.Contains(msg, msgPublishEnvelope):
		return failPeerUnreachable
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(msg, msgDeadline):
		return failDeadline
	case errors.Is(err, net.ErrClosed), strings.Contains(msg, msgClosedConn), strings.Contains(msg, msgClosedTwice):
		return failClosedConn
	}
	return failUnknown
}

// rejectReason returns the reason of a peer's rejection, if err is one.
func rejectReason(err error) string {
	var rej client.PeerRejectedError
	if errors.As(err, &rej) {
		return rej.Reason
	}
	return ""
}
