package node

import (
	"perun.network/go-perun/channel"
)

// ChannelStateForTest returns a live channel's parameters and current state
// (a test builds and signs an older version from them).
func (s *Session) ChannelStateForTest(id string) (*channel.Params, *channel.State, error) {
	e, err := s.entry(id)
	if err != nil {
		return nil, nil, err
	}
	return e.ch.Params(), e.ch.State().Clone(), nil
}

// OperatorForTest returns the watchtower's operator account.
func (n *Node) OperatorForTest() string { return n.operator.Hex() }
