package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/perund/perund/internal/leaktest"
	"github.com/perund/perund/perunlog"
)

// TestLoadSmall runs the load program with a small bound: payments flow,
// notifications arrive, closing the connections returns the node to its
// idle goroutines, and once the node is closed no goroutine is left.
func TestLoadSmall(t *testing.T) {
	perunlog.Install(slog.New(slog.NewTextHandler(io.Discard, nil)))
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, leaktest.Ignores()...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Sessions: 4, Conns: 40, Duration: 2 * time.Second}, testWriter{t})
	require.NoError(t, err)
	rep.Print(os.Stdout)
	require.Positive(t, rep.Payments)
	require.Zero(t, rep.Failed)
	require.Positive(t, rep.Notifications)
	require.Equal(t, 72, rep.Subscriptions)
	require.Zero(t, rep.Leaked)
	// goleveldb's mpoolDrain ends up to a second after its DB closed.
	var leak error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if leak = goleak.Find(opts...); leak == nil {
			break
		}
	}
	require.NoError(t, leak)
}

// TestCurveSmall runs the cost curve at two small points: every user gets
// a channel, the idle node watches all of them with no goroutine per user,
// the restarted node checks every channel, and the paying users pay.
func TestCurveSmall(t *testing.T) {
	perunlog.Install(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pts, err := RunCurve(ctx, CurveConfig{Points: []int{4, 12}, Duration: time.Second, Paying: 0.5, Batch: 4}, io.Discard)
	require.NoError(t, err)
	PrintCurve(os.Stdout, pts)
	require.Len(t, pts, 2)
	for _, p := range pts {
		require.Equal(t, p.Users/2, p.Channels)
		require.Positive(t, p.Payments)
		require.Zero(t, p.Failed)
		require.Positive(t, p.RestoreSeconds)
	}
	require.Equal(t, pts[0].Goroutines, pts[1].Goroutines, "an idle user costs no goroutine")
}

// testWriter sends the load program's progress to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
