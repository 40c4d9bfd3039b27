// Package perunlog routes go-perun's logging into log/slog. go-perun's info
// level is chatty, so trace, debug and info become slog debug; warn and
// error become slog warn (go-perun reports ordinary peer disconnects as
// errors).
package perunlog

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	plog "perun.network/go-perun/log"
)

// Install makes l go-perun's global logger. go-perun captures its logger
// when objects are built, so call it before creating any node.
func Install(l *slog.Logger) { plog.Set(&logger{l: l.With("component", "go-perun")}) }

// logger is go-perun's logger over slog. Nothing is formatted unless the
// level is enabled: go-perun formats whole updates and address maps (whose
// String computes checksums) at debug and trace level on every payment.
// Fields are kept as they are and formatted only for a line written.
type logger struct {
	l      *slog.Logger
	fields []field
}

type field struct {
	key string
	v   any
}

const trace = slog.LevelDebug - 4

func (g *logger) enabled(lvl slog.Level) bool { return g.l.Enabled(context.Background(), lvl) }

func (g *logger) write(lvl slog.Level, msg string) {
	attrs := make([]any, 0, 2*len(g.fields))
	for _, f := range g.fields {
		attrs = append(attrs, f.key, oneLine(fmt.Sprint(f.v), slog.LevelWarn))
	}
	g.l.Log(context.Background(), lvl, oneLine(msg, lvl), attrs...)
}

func (g *logger) logf(lvl slog.Level, f string, a []any) {
	if g.enabled(lvl) {
		g.write(lvl, fmt.Sprintf(f, a...))
	}
}

func (g *logger) logs(lvl slog.Level, a []any) {
	if g.enabled(lvl) {
		g.write(lvl, fmt.Sprint(a...))
	}
}

func (g *logger) logln(lvl slog.Level, a []any) {
	if g.enabled(lvl) {
		g.write(lvl, fmt.Sprintln(a...))
	}
}

func (g *logger) log(lvl slog.Level, msg string) {
	if g.enabled(lvl) {
		g.write(lvl, msg)
	}
}

// oneLine makes a message of go-perun one line: errors printed with %+v
// carry stack traces (a function line, then a tab-indented file:line),
// which are dropped below error level; the remaining lines are joined
// with "; ".
func oneLine(msg string, lvl slog.Level) string {
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	if len(lines) == 1 {
		return lines[0]
	}
	keep := make([]string, 0, len(lines))
	for i, l := range lines {
		frame := strings.HasPrefix(l, "\t") ||
			(i+1 < len(lines) && strings.HasPrefix(lines[i+1], "\t") && !strings.ContainsAny(l, " \t"))
		if frame && lvl < slog.LevelError {
			continue
		}
		if l = strings.TrimSpace(l); l != "" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "; ")
}

func (g *logger) Printf(f string, a ...interface{}) { g.logf(slog.LevelDebug, f, a) }
func (g *logger) Print(a ...interface{})            { g.logs(slog.LevelDebug, a) }
func (g *logger) Println(a ...interface{})          { g.logln(slog.LevelDebug, a) }
func (g *logger) Tracef(f string, a ...interface{}) { g.logf(trace, f, a) }
func (g *logger) Debugf(f string, a ...interface{}) { g.logf(slog.LevelDebug, f, a) }
func (g *logger) Infof(f string, a ...interface{})  { g.logf(slog.LevelDebug, f, a) }
func (g *logger) Warnf(f string, a ...interface{})  { g.logf(slog.LevelWarn, f, a) }
func (g *logger) Errorf(f string, a ...interface{}) { g.logf(slog.LevelWarn, f, a) }
func (g *logger) Trace(a ...interface{})            { g.logs(trace, a) }
func (g *logger) Debug(a ...interface{})            { g.logs(slog.LevelDebug, a) }
func (g *logger) Info(a ...interface{})             { g.logs(slog.LevelDebug, a) }
func (g *logger) Warn(a ...interface{})             { g.logs(slog.LevelWarn, a) }
func (g *logger) Error(a ...interface{})            { g.logs(slog.LevelWarn, a) }
func (g *logger) Traceln(a ...interface{})          { g.logln(trace, a) }
func (g *logger) Debugln(a ...interface{})          { g.logln(slog.LevelDebug, a) }
func (g *logger) Infoln(a ...interface{})           { g.logln(slog.LevelDebug, a) }
func (g *logger) Warnln(a ...interface{})           { g.logln(slog.LevelWarn, a) }
func (g *logger) Errorln(a ...interface{})          { g.logln(slog.LevelWarn, a) }
func (g *logger) Panicf(f string, a ...interface{}) { panic(fmt.Sprintf(f, a...)) }
func (g *logger) Panic(a ...interface{})            { panic(fmt.Sprint(a...)) }
func (g *logger) Panicln(a ...interface{})          { panic(fmt.Sprintln(a...)) }
func (g *logger) Fatalf(f string, a ...interface{}) {
	g.log(slog.LevelError, fmt.Sprintf(f, a...))
	os.Exit(1)
}
func (g *logger) Fatal(a ...interface{})   { g.log(slog.LevelError, fmt.Sprint(a...)); os.Exit(1) }
func (g *logger) Fatalln(a ...interface{}) { g.log(slog.LevelError, fmt.Sprintln(a...)); os.Exit(1) }

// with returns a logger with more fields, unformatted.
func (g *logger) with(fs ...field) *logger {
	all := make([]field, 0, len(g.fields)+len(fs))
	return &logger{l: g.l, fields: append(append(all, g.fields...), fs...)}
}

func (g *logger) WithField(k string, v interface{}) plog.Logger { return g.with(field{k, v}) }
func (g *logger) WithFields(f plog.Fields) plog.Logger {
	fs := make([]field, 0, len(f))
	for k, v := range f {
		fs = append(fs, field{k, v})
	}
	return g.with(fs...)
}
func (g *logger) WithError(err error) plog.Logger { return g.with(field{"err", err}) }
