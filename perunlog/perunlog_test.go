package perunlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	plog "perun.network/go-perun/log"
)

// stack is an error as go-perun prints it with %+v (github.com/pkg/errors).
const stack = `sending message: connection reset by peer
perun.network/go-perun/wire/net.(*Endpoint).Send
	/go/pkg/mod/perun.network/go-perun@v0.15.0/wire/net/endpoint.go:61
perun.network/go-perun/wire/net.(*Bus).Publish
	/go/pkg/mod/perun.network/go-perun@v0.15.0/wire/net/bus.go:93
runtime.goexit
	/usr/local/go/src/runtime/asm_amd64.s:1700`

// TestLogger: go-perun's lines reach slog as one JSON object each, at the
// mapped level, with fields, and without stack traces below error level.
func TestLogger(t *testing.T) {
	tests := []struct {
		name  string
		do    func(l plog.Logger)
		level string
		msg   string
		attrs map[string]string
	}{
		{"info is debug", func(l plog.Logger) { l.Infof("dialing %s", "x") }, "DEBUG", "dialing x", nil},
		{"error is warn", func(l plog.Logger) { l.Error("peer gone") }, "WARN", "peer gone", nil},
		{"a stack trace is dropped", func(l plog.Logger) { l.Errorf("%s", stack) }, "WARN", "sending message: connection reset by peer", nil},
		{"a stack trace stays at error level", func(l plog.Logger) { (&logger{l: l.(*logger).l}).log(slog.LevelError, stack) }, "ERROR",
			"sending message: connection reset by peer; perun.network/go-perun/wire/net.(*Endpoint).Send; /go/pkg/mod/perun.network/go-perun@v0.15.0/wire/net/endpoint.go:61; perun.network/go-perun/wire/net.(*Bus).Publish; /go/pkg/mod/perun.network/go-perun@v0.15.0/wire/net/bus.go:93; runtime.goexit; /usr/local/go/src/runtime/asm_amd64.s:1700", nil},
		{"lines joined", func(l plog.Logger) { l.Warnln("first line\nsecond line") }, "WARN", "first line; second line", nil},
		{"fields", func(l plog.Logger) { l.WithField("peer", "0xab").WithFields(plog.Fields{"n": 3}).Warn("x") }, "WARN", "x", map[string]string{"peer": "0xab", "n": "3"}},
		{"an error field without its stack", func(l plog.Logger) { l.WithError(errors.New(stack)).Warn("send") }, "WARN", "send",
			map[string]string{"err": "sending message: connection reset by peer"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := &logger{l: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug - 4})).With("component", "go-perun")}
			tc.do(l)
			out := strings.TrimSuffix(buf.String(), "\n")
			require.NotContains(t, out, "\n", "one event, one line")
			var rec map[string]any
			require.NoError(t, json.Unmarshal([]byte(out), &rec), out)
			require.Equal(t, tc.level, rec["level"])
			require.Equal(t, tc.msg, rec["msg"])
			require.Equal(t, "go-perun", rec["component"])
			for k, v := range tc.attrs {
				require.Equal(t, v, rec[k], k)
			}
		})
	}
}

// TestInstall: go-perun's global logger writes through slog.
func TestInstall(t *testing.T) {
	var buf bytes.Buffer
	Install(slog.New(slog.NewJSONHandler(&buf, nil)))
	plog.Warn("through slog")
	require.Contains(t, buf.String(), `"msg":"through slog"`)
}

// counted counts how often it is formatted.
type counted struct{ n *int }

func (c counted) String() string { *c.n++; return "counted" }

// TestNothingFormattedBelowLevel: a disabled level formats neither the
// message's arguments nor the fields (go-perun logs whole updates and
// address maps at debug level on every payment).
func TestNothingFormattedBelowLevel(t *testing.T) {
	var n int
	var buf bytes.Buffer
	l := &logger{l: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	c := counted{&n}
	fl := l.WithField("peer", c).WithFields(plog.Fields{"m": c}).WithError(errors.New("e"))
	fl.Debugf("update %v", c)
	fl.Tracef("%v", c)
	fl.Info(c)
	fl.Debugln(c)
	require.Zero(t, n, "nothing formatted below the level")
	require.Empty(t, buf.String())
	fl.Warnf("update %v", c)
	require.Equal(t, 3, n, "the message and both fields, once")
	require.Contains(t, buf.String(), `"peer":"counted"`)
}
