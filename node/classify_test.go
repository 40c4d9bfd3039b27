package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	pkgerrors "github.com/pkg/errors"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/client"
)

// Each error as go-perun v0.15.0 builds and wraps it (pkg/errors), and what
// perund makes of it.
func TestClassify(t *testing.T) {
	fundingTimeout := channel.NewFundingTimeoutError([]*channel.AssetFundingError{{Asset: 0, TimedOutPeers: []channel.Index{1}}})
	tests := []struct {
		name string
		err  error
		want failure
	}{
		{"nil", nil, failUnknown},
		{"proposal rejected", pkgerrors.WithStack(client.PeerRejectedError{ItemType: "channel proposal", Reason: "no"}), failPeerRejected},
		{"update rejected", pkgerrors.WithMessage(pkgerrors.WithStack(client.PeerRejectedError{ItemType: "channel update", Reason: "no"}), "update"), failPeerRejected},
		{"no answer", pkgerrors.Wrap(client.RequestTimedOutError("peer did not respond to the channel proposal"), "context deadline exceeded"), failPeerNoAnswer},
		// go-perun: fundLedgerChannel wraps the funder's FundingTimeoutError,
		// ProposeChannel wraps that in a ChannelFundingError, which has no Unwrap.
		{"peer deposit late", &client.ChannelFundingError{Err: pkgerrors.WithMessage(fundingTimeout, "waiting for peer funding")}, failPeerDepositLate},
		{"peer deposit late, unwrapped", fundingTimeout, failPeerDepositLate},
		{"own deposit failed", &client.ChannelFundingError{Err: pkgerrors.WithMessage(errors.New("sending transaction: insufficient funds"), "error while funding channel")}, failFunding},
		{"proposal not sent", pkgerrors.WithMessage(pkgerrors.WithMessagef(errors.New("EOF"), "publishing %T envelope", &client.LedgerChannelProposalMsg{}), msgPublishProposal), failPeerUnreachable},
		{"update not sent", pkgerrors.WithMessage(pkgerrors.WithMessage(errors.New("broken pipe"), "publishing message"), msgSendingUpdate), failPeerUnreachable},
		{"dial refused", fmt.Errorf("open: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), failPeerUnreachable},
		{"dial timed out", fmt.Errorf("publishing: %w", &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}), failPeerUnreachable},
		{"own deadline", fmt.Errorf("settle: %w", context.DeadlineExceeded), failDeadline},
		{"deadline as text", errors.New("waiting: context deadline exceeded"), failDeadline},
		{"closed", fmt.Errorf("close: %w", net.ErrClosed), failClosedConn},
		// EndpointRegistry.Close of a bus whose peer closed its connection
		// meanwhile.
		{"closed twice", pkgerrors.WithMessage(errors.New("already closed"), "closing peer"), failClosedConn},
		{"other", errors.New("something else"), failUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, classify(tc.err), "%v", tc.err)
		})
	}
	require.Equal(t, "no", rejectReason(tests[1].err))
}

// The messages classify recognises by name are the ones go-perun writes:
// an upgrade that rewords one fails here.
func TestGoPerunMessages(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "perun.network/go-perun").Output()
	require.NoError(t, err)
	dir := strings.TrimSpace(string(out))
	tests := []struct{ file, text string }{
		{"client/proposal.go", `"` + msgPublishProposal + `"`},
		{"client/update.go", `"` + msgSendingUpdate + `"`},
		{"wire/net/bus.go", `"` + msgPublishEnvelope + ` %T envelope"`},
		{"channel/funder.go", "errors.WithStack(FundingTimeoutError{"},
		{"client/proposal.go", "func newChannelFundingError(err error) *ChannelFundingError"},
		{"client/update.go", "RequestTimedOutError string"},
		{"wire/net/ioconn.go", `errors.New("` + msgClosedTwice + `")`},
		{"wire/net/endpoint_registry.go", `errors.WithMessage(cerr, "closing peer")`},
	}
	for _, tc := range tests {
		src, err := os.ReadFile(filepath.Join(dir, tc.file))
		require.NoError(t, err)
		require.Contains(t, string(src), tc.text, "go-perun's %s no longer says %s", tc.file, tc.text)
	}
}
