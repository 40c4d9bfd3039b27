package node

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/watchtower"
)

// TestJudge: what the node does with a channel for each on-chain entry,
// the latest local version being 5, at chain time 100.
func TestJudge(t *testing.T) {
	t.Parallel()
	const local, now = 5, 100
	for _, tc := range []struct {
		name string
		d    chainDispute
		want verdict
	}{
		{"nothing registered", chainDispute{}, verdictSettle},
		{"the latest registered", chainDispute{Registered: true, Phase: watchtower.PhaseRegistered, Version: 5, Timeout: 200}, verdictSettle},
		{"the latest concluded", chainDispute{Registered: true, Phase: watchtower.PhaseConcluded, Version: 5, Timeout: 50}, verdictSettle},
		{"stale, still refutable", chainDispute{Registered: true, Phase: watchtower.PhaseRegistered, Version: 2, Timeout: 200}, verdictSettle},
		{"stale, challenge over", chainDispute{Registered: true, Phase: watchtower.PhaseRegistered, Version: 2, Timeout: 100}, verdictAwait},
		{"newer than ours, still running", chainDispute{Registered: true, Phase: watchtower.PhaseRegistered, Version: 9, Timeout: 200}, verdictAwait},
		{"stale concluded", chainDispute{Registered: true, Phase: watchtower.PhaseConcluded, Version: 2, Timeout: 50}, verdictAdopt},
		{"newer concluded", chainDispute{Registered: true, Phase: watchtower.PhaseConcluded, Version: 9, Timeout: 50}, verdictAdopt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want.String(), judge(tc.d, local, now).String())
		})
	}
}
