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

type logger struct{ l *slog.Logger }

func (g *logger) log(lvl slog.Level, msg string) {
	if g.l.Enabled(context.Background(), lvl) {
		g.l.Log(context.Background(), lvl, oneLine(msg, lvl))
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

func (g *logger) Printf(f string, a ...interface{}) { g.log(slog.LevelDebug, fmt.Sprintf(f, a...)) }
func (g *logger) Print(a ...interface{})            { g.log(slog.LevelDebug, fmt.Sprint(a...)) }
func (g *logger) Println(a ...interface{})          { g.log(slog.LevelDebug, fmt.Sprintln(a...)) }
func (g *logger) Tracef(f string, a ...interface{}) { g.log(slog.LevelDebug-4, fmt.Sprintf(f, a...)) }
func (g *logger) Debugf(f string, a ...interface{}) { g.log(slog.LevelDebug, fmt.Sprintf(f, a...)) }
func (g *logger) Infof(f string, a ...interface{})  { g.log(slog.LevelDebug, fmt.Sprintf(f, a...)) }
func (g *logger) Warnf(f string, a ...interface{})  { g.log(slog.LevelWarn, fmt.Sprintf(f, a...)) }
func (g *logger) Errorf(f string, a ...interface{}) { g.log(slog.LevelWarn, fmt.Sprintf(f, a...)) }
func (g *logger) Trace(a ...interface{})            { g.log(slog.LevelDebug-4, fmt.Sprint(a...)) }
func (g *logger) Debug(a ...interface{})            { g.log(slog.LevelDebug, fmt.Sprint(a...)) }
func (g *logger) Info(a ...interface{})             { g.log(slog.LevelDebug, fmt.Sprint(a...)) }
func (g *logger) Warn(a ...interface{})             { g.log(slog.LevelWarn, fmt.Sprint(a...)) }
func (g *logger) Error(a ...interface{})            { g.log(slog.LevelWarn, fmt.Sprint(a...)) }
func (g *logger) Traceln(a ...interface{})          { g.log(slog.LevelDebug-4, fmt.Sprintln(a...)) }
func (g *logger) Debugln(a ...interface{})          { g.log(slog.LevelDebug, fmt.Sprintln(a...)) }
func (g *logger) Infoln(a ...interface{})           { g.log(slog.LevelDebug, fmt.Sprintln(a...)) }
func (g *logger) Warnln(a ...interface{})           { g.log(slog.LevelWarn, fmt.Sprintln(a...)) }
func (g *logger) Errorln(a ...interface{})          { g.log(slog.LevelWarn, fmt.Sprintln(a...)) }
func (g *logger) Panicf(f string, a ...interface{}) { panic(fmt.Sprintf(f, a...)) }
func (g *logger) Panic(a ...interface{})            { panic(fmt.Sprint(a...)) }
func (g *logger) Panicln(a ...interface{})          { panic(fmt.Sprintln(a...)) }
func (g *logger) Fatalf(f string, a ...interface{}) {
	g.log(slog.LevelError, fmt.Sprintf(f, a...))
	os.Exit(1)
}
func (g *logger) Fatal(a ...interface{})   { g.log(slog.LevelError, fmt.Sprint(a...)); os.Exit(1) }
func (g *logger) Fatalln(a ...interface{}) { g.log(slog.LevelError, fmt.Sprintln(a...)); os.Exit(1) }
func (g *logger) WithField(k string, v interface{}) plog.Logger {
	return &logger{l: g.l.With(k, oneLine(fmt.Sprint(v), slog.LevelWarn))}
}
func (g *logger) WithFields(f plog.Fields) plog.Logger {
	l := g.l
	for k, v := range f {
		l = l.With(k, oneLine(fmt.Sprint(v), slog.LevelWarn))
	}
	return &logger{l: l}
}
func (g *logger) WithError(err error) plog.Logger {
	return &logger{l: g.l.With("err", oneLine(fmt.Sprint(err), slog.LevelWarn))}
}
