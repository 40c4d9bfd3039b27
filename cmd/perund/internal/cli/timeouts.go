package cli

import "time"

// Default timeouts of a call, by class.
const (
	// QuickTimeout bounds a call that the node answers by itself, and
	// every connect, session_resume, session_open and perun_subscribe.
	QuickTimeout = 30 * time.Second
	// SlowTimeout bounds a call that waits for the peer or the chain.
	SlowTimeout = 30 * time.Minute
)

// DefaultTimeout is how long a call of method waits for its answer unless
// -timeout says otherwise: SlowTimeout for the calls that wait for the
// peer or the chain, else QuickTimeout.
//
// The node bounds its calls with the same two classes (30 s and 30 min,
// in package rpc's method table) but, as of this writing, exposes them
// neither in Go nor in rpc_discover: the slow methods are listed here, the
// client's one place for them. The end-to-end test checks that each is a
// method of the node.
func DefaultTimeout(method string) time.Duration {
	switch method {
	case "channel_open", "channel_send", "channel_request", "channel_close", "channel_forceClose",
		"proposal_respond", "update_respond":
		return SlowTimeout
	}
	return QuickTimeout
}
