package node

import (
	"perun.network/go-perun/channel"

	"github.com/perund/perund/watchtower"
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

// TowerStatsForTest returns the counters of the node's watchtower.
func (n *Node) TowerStatsForTest() watchtower.Stats { return n.tower.Stats() }

// OperatorForTest returns the watchtower's operator account.
func (n *Node) OperatorForTest() string { return n.operator.Hex() }
