// Package cli is perund's command-line client of the JSON-RPC API, as
// lncli and lightning-cli are for their nodes:
//
//	perund call METHOD [key=value ... | JSON]   one call, the result as indented JSON
//	perund watch TOPIC...                       notifications as JSON lines until interrupted
//	perund completion bash                      a bash completion script
//
// The node's URL, its auth token and the session come from flags or the
// environment (PERUND_URL, PERUND_TOKEN, PERUND_SESSION, PERUND_PASSWORD).
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Environment variables read by the client.
const (
	// EnvURL is the node's API URL.
	EnvURL = "PERUND_URL"
	// EnvToken is the node's rpc.authToken.
	EnvToken = "PERUND_TOKEN"
	// EnvSession is a session to resume, as "sessionId:token".
	EnvSession = "PERUND_SESSION"
	// EnvPassword is the password of the account named by -account.
	EnvPassword = "PERUND_PASSWORD"
)

// DefaultURL is the node's API URL unless -url or PERUND_URL names another.
const DefaultURL = "ws://127.0.0.1:8400/rpc"

// EnvVars lists the client's environment variables. They are not
// configuration keys of the node, whose configuration refuses unknown
// PERUND_ variables: perund's node commands drop them from the environment.
func EnvVars() []string { return []string{EnvURL, EnvToken, EnvSession, EnvPassword} }

// IsCommand reports whether name is one of the commands Run runs.
func IsCommand(name string) bool {
	switch name {
	case "call", "watch", "completion":
		return true
	}
	return false
}

// Env is what a command uses besides the network: its output streams, the
// environment and the terminal.
type Env struct {
	// Stdout receives results and notifications.
	Stdout io.Writer
	// Stderr receives errors, prompts and hints.
	Stderr io.Writer
	// Getenv reads an environment variable, as os.Getenv.
	Getenv func(key string) string
	// ReadPassword reads a password without echo after showing prompt;
	// nil when there is no terminal (then only PERUND_PASSWORD works).
	ReadPassword func(prompt string) (string, error)
}

// Main runs args (a command of IsCommand and its arguments) with the
// process's standard streams and environment until SIGINT or SIGTERM, and
// returns the exit code. readPassword reads a password without echo (nil:
// only PERUND_PASSWORD).
func Main(args []string, readPassword func(prompt string) (string, error)) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, args, Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, ReadPassword: readPassword})
}

// Run runs args (a command of IsCommand and its arguments) until ctx ends
// and returns the exit code: 0 on success (and for watch when ctx ends),
// 1 on an error answer or a failed connection, 2 on a usage error.
func Run(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 || !IsCommand(args[0]) {
		fmt.Fprint(env.Stderr, "usage: perund call|watch|completion ... (each explains itself with -h)\n")
		return 2
	}
	var err error
	switch args[0] {
	case "call":
		err = runCall(ctx, args[1:], env)
	case "watch":
		err = runWatch(ctx, args[1:], env)
	case "completion":
		err = runCompletion(args[1:], env)
	}
	return exitCode(args[0], err, env.Stderr)
}

// usageError is a command line the command cannot run; msg may be empty
// when the flag package has said what is wrong.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// exitCode reports err on stderr and returns the exit code for it.
func exitCode(cmd string, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		if ue.msg != "" {
			fmt.Fprintf(stderr, "perund %s: %s\n", cmd, ue.msg)
		}
		fmt.Fprintf(stderr, "Run 'perund %s -h' for help.\n", cmd)
		return 2
	}
	var re *RPCError
	if errors.As(err, &re) {
		if err != error(re) { // say which step failed, then the error object
			fmt.Fprintf(stderr, "perund %s: %s:\n", cmd, strings.TrimSuffix(err.Error(), ": "+re.Error()))
		}
		_ = writeJSON(stderr, re, true)
		return 1
	}
	fmt.Fprintf(stderr, "perund %s: %v\n", cmd, err)
	return 1
}

// options are the flags of call and watch.
type options struct {
	url, token, session, account string
	timeout                      time.Duration
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.url, "url", "", "the node's API `URL` (default $"+EnvURL+", else "+DefaultURL+"); HOST:PORT and http(s):// work too")
	fs.StringVar(&o.token, "token", "", "the node's rpc.authToken `T` (default $"+EnvToken+"; the variable keeps it out of ps)")
	fs.StringVar(&o.session, "session", "", "resume the session `ID:TOKEN` first (default $"+EnvSession+")")
	fs.StringVar(&o.account, "account", "", "open a session of account `ADDR` first, password from $"+EnvPassword+" or the terminal; prints the export "+EnvSession+"=… line to reuse it")
	fs.DurationVar(&o.timeout, "timeout", 0, "bound on each network step (default "+StepTimeout.String()+"; for the call, the method's x-timeout in the node's rpc_discover plus "+TimeoutMargin.String()+")")
}

// quick is the bound on connecting, the session, subscribing and
// rpc_discover.
func (o *options) quick() time.Duration {
	if o.timeout > 0 {
		return o.timeout
	}
	return StepTimeout
}

// target is where and as whom a command connects.
type target struct {
	url, token string
	// sessionID and sessionToken name a session to resume.
	sessionID, sessionToken string
	// account and password open a session.
	account, password string
}

// resolve combines the flags with the environment (flags win) and reads
// the password of -account, before any connection is open. Without
// withSession, PERUND_SESSION is not read.
func (o *options) resolve(env Env, withSession bool) (target, error) {
	var t target
	if o.timeout < 0 {
		return t, usagef("-timeout must be positive")
	}
	raw := firstOf(o.url, env.Getenv(EnvURL), DefaultURL)
	u, err := normalizeURL(raw)
	if err != nil {
		return t, err
	}
	t.url, t.token = u, firstOf(o.token, env.Getenv(EnvToken))
	if o.account != "" {
		if o.session != "" {
			return t, usagef("give -session or -account, not both")
		}
		t.account = o.account
		if t.password = env.Getenv(EnvPassword); t.password == "" {
			if env.ReadPassword == nil {
				return t, usagef("-account %s: set %s (no terminal to ask for the password)", o.account, EnvPassword)
			}
			if t.password, err = env.ReadPassword("Password of " + o.account + ": "); err != nil {
				return t, fmt.Errorf("-account %s: %w", o.account, err)
			}
		}
		return t, nil
	}
	s := o.session
	if s == "" && withSession {
		s = env.Getenv(EnvSession)
	}
	if s != "" {
		if t.sessionID, t.sessionToken, err = parseSession(s); err != nil {
			return t, err
		}
	}
	return t, nil
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// normalizeURL turns HOST:PORT and http(s):// URLs into the ws(s):// URL of
// the node's /rpc.
func normalizeURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "ws://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", usagef("node URL %q: %v", s, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", usagef("node URL %q: want ws://, wss:// or HOST:PORT", s)
	}
	if u.Host == "" {
		return "", usagef("node URL %q: no host", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/rpc"
	}
	return u.String(), nil
}

// parseSession splits "sessionId:token".
func parseSession(s string) (id, token string, err error) {
	id, token, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || id == "" || token == "" {
		return "", "", usagef("session %q: want SESSIONID:TOKEN (as printed by session_open)", abbrevRaw(s))
	}
	return id, token, nil
}

// abbrevRaw shortens s without quoting it (a session token is a secret:
// show its start only).
func abbrevRaw(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

// newFlagSet returns a flag set printing its errors on env.Stderr; help
// (-h) is printed by parseArgs.
func newFlagSet(name string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {}
	return fs
}

// parseArgs parses flags before and after the positional arguments (as
// in "perund call node_info -url X"); "--" ends the flags. On -h it prints
// help and fs's flags on env.Stdout.
func parseArgs(fs *flag.FlagSet, args []string, help string, env Env) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(env.Stdout, help)
				fs.SetOutput(env.Stdout)
				fs.PrintDefaults()
				return nil, err
			}
			return nil, usageError{}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

const callHelp = `usage: perund call [flags] METHOD [key=value ... | JSON]
       perund call --list-methods

Sends one JSON-RPC call to the node and prints the result as indented JSON
on stdout. An error answer prints the error object (code, message, data) as
JSON on stderr. Exit code: 0 done, 1 error answer or no connection, 2 usage.

Params: none, or one JSON object or array (passed as is), or key=value pairs
building an object:
  - a value is a string unless it is true, false or null or starts with
    {, [ or " (then it must be JSON): amounts are decimal strings in this
    API, so amount=1000 sends "1000"
  - key:=JSON takes the value as JSON whatever it is: challengeDuration:=60
  - dotted keys nest: balance.mine=5 balance.theirs=0 sends
    {"balance":{"mine":"5","theirs":"0"}}

  perund call node_info
  perund call session_open account=0x7099… password=alice
  perund call -session "$PERUND_SESSION" channel_send channelId=0x… amount=1000
  perund call channel_open '{"peer":"bob","balance":{"mine":"1","theirs":"0"}}'

Session: -session ID:TOKEN (or PERUND_SESSION) resumes that session before
the call; -account ADDR opens one (password from PERUND_PASSWORD or asked
without echo) and prints "export PERUND_SESSION=…" on stderr, as does
"perund call session_open".

Timeouts: connecting and the session wait 30s each. The call waits as long
as the node says it may take (x-timeout in its rpc_discover, read on the same
connection first: 30s for most methods, 30m for those that wait for the peer
or the chain) plus 5s for the round trip. -timeout sets one bound for all
steps and skips rpc_discover. A call that times out may still complete on
the node.

Flags (before or after METHOD):
`

const watchHelp = `usage: perund watch [flags] TOPIC...

Subscribes to each TOPIC (proposals, updates, channels, disputes) of the
session and prints each notification as one JSON line
  {"topic":"…","subscription":"0x…","result":{…}}
on stdout until interrupted (SIGINT, SIGTERM: exit 0) or until the
connection closes (exit 1). A session is needed: -session, PERUND_SESSION or
-account (see perund call -h). -timeout bounds connecting, the session and
each subscription; waiting for notifications has no bound, but a node that
sends nothing, not even its pings, for 90s counts as gone.

Flags (before or after the topics):
`

const completionHelp = `usage: perund completion bash

Prints a bash completion script: commands, flags, the node's method names
for "perund call" (from "perund call --list-methods", i.e. rpc_discover of
the node at -url / PERUND_URL) and the topics for "perund watch". Load it with
  source <(perund completion bash)
or save it in ~/.local/share/bash-completion/completions/perund.
zsh: autoload -U bashcompinit && bashcompinit first.
`

func runCall(ctx context.Context, args []string, env Env) error {
	var o options
	fs := newFlagSet("call", env)
	o.register(fs)
	list := fs.Bool("list-methods", false, "print the node's method names (from rpc_discover), one per line, and exit")
	pos, err := parseArgs(fs, args, callHelp, env)
	if err != nil {
		return err
	}
	if *list {
		if len(pos) > 0 {
			return usagef("--list-methods takes no method or params")
		}
		o.session, o.account = "", "" // rpc_discover needs no session
		t, err := o.resolve(env, false)
		if err != nil {
			return err
		}
		return listMethods(ctx, t, o.quick(), env)
	}
	if len(pos) == 0 {
		return usagef("missing METHOD (perund call --list-methods lists them)")
	}
	method := pos[0]
	params, err := ParseParams(pos[1:])
	if err != nil {
		return usageError{err.Error()}
	}
	t, err := o.resolve(env, true)
	if err != nil {
		return err
	}
	c, err := connect(ctx, t, o.quick(), env)
	if err != nil {
		return err
	}
	defer c.Close()
	timeout, err := o.callTimeout(ctx, c, method)
	if err != nil {
		return err
	}
	res, err := callWithin(ctx, c, method, params, timeout)
	if err != nil {
		return err
	}
	if err := writeJSON(env.Stdout, res, true); err != nil {
		return err
	}
	if method == "session_open" {
		printExport(env.Stderr, res)
	}
	return nil
}

// listMethods prints the method names of the node's rpc_discover.
func listMethods(ctx context.Context, t target, timeout time.Duration, env Env) error {
	c, err := connect(ctx, t, timeout, env)
	if err != nil {
		return err
	}
	defer c.Close()
	doc, err := fetchDocument(ctx, c, timeout)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, m := range doc.Methods {
		b.WriteString(m.Name + "\n")
	}
	if _, err := io.WriteString(env.Stdout, b.String()); err != nil {
		return fmt.Errorf("write method names: %w", err)
	}
	return nil
}

// watchLine is one line of perund watch.
type watchLine struct {
	Topic        string          `json:"topic"`
	Subscription string          `json:"subscription"`
	Result       json.RawMessage `json:"result"`
}

func runWatch(ctx context.Context, args []string, env Env) error {
	var o options
	fs := newFlagSet("watch", env)
	o.register(fs)
	topics, err := parseArgs(fs, args, watchHelp, env)
	if err != nil {
		return err
	}
	if len(topics) == 0 {
		return usagef("missing TOPIC (proposals, updates, channels or disputes)")
	}
	t, err := o.resolve(env, true)
	if err != nil {
		return err
	}
	c, err := connect(ctx, t, o.quick(), env)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer c.Close()
	bySub := map[string]string{}
	for _, topic := range topics {
		p, err := json.Marshal([]string{topic})
		if err != nil {
			return fmt.Errorf("encode topic: %w", err)
		}
		res, err := callWithin(ctx, c, "perun_subscribe", p, o.quick())
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("subscribe to %s: %w", topic, err)
		}
		var id string
		if err := json.Unmarshal(res, &id); err != nil {
			return fmt.Errorf("subscribe to %s: the node answered %s, not a subscription id", topic, res)
		}
		bySub[id] = topic
		fmt.Fprintf(env.Stderr, "perund watch: watching %s (subscription %s)\n", topic, id)
	}
	for {
		n, err := c.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: the connection closed cleanly
			}
			return err
		}
		if err := writeJSON(env.Stdout, watchLine{Topic: bySub[n.Subscription], Subscription: n.Subscription, Result: n.Result}, false); err != nil {
			return err
		}
	}
}

func runCompletion(args []string, env Env) error {
	fs := newFlagSet("completion", env)
	pos, err := parseArgs(fs, args, completionHelp, env)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "bash" {
		return usagef("want: perund completion bash")
	}
	if _, err := io.WriteString(env.Stdout, bashCompletion); err != nil {
		return fmt.Errorf("write completion script: %w", err)
	}
	return nil
}

// connect dials t.url and resumes or opens t's session, each step within
// timeout. Opening a session prints the line that exports it.
func connect(ctx context.Context, t target, timeout time.Duration, env Env) (*Conn, error) {
	dctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("no connection within %s", timeout))
	c, err := Dial(dctx, t.url, t.token)
	if err != nil && dctx.Err() != nil {
		err = fmt.Errorf("connect to %s: %w", t.url, context.Cause(dctx))
	}
	cancel()
	if err != nil {
		return nil, err
	}
	switch {
	case t.sessionID != "":
		p, _ := json.Marshal(map[string]string{"sessionId": t.sessionID, "token": t.sessionToken})
		if _, err := callWithin(ctx, c, "session_resume", p, timeout); err != nil {
			c.Close()
			return nil, fmt.Errorf("resume the session of -session or %s: %w", EnvSession, err)
		}
	case t.account != "":
		p, _ := json.Marshal(map[string]string{"account": t.account, "password": t.password})
		res, err := callWithin(ctx, c, "session_open", p, timeout)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("open a session of -account %s: %w", t.account, err)
		}
		printExport(env.Stderr, res)
	}
	return c, nil
}

// callWithin calls method on c, waiting at most timeout for the answer.
func callWithin(ctx context.Context, c *Conn, method string, params json.RawMessage, timeout time.Duration) (json.RawMessage, error) {
	cctx, cancel := context.WithTimeoutCause(ctx, timeout,
		fmt.Errorf("no answer within %s (-timeout sets the wait; the node may still carry the call out)", timeout))
	defer cancel()
	return c.Call(cctx, method, params)
}

// printExport prints the shell line that keeps the session of a
// session_open result for the next commands.
func printExport(w io.Writer, result json.RawMessage) {
	var s struct {
		SessionID string `json:"sessionId"`
		Token     string `json:"token"`
	}
	if json.Unmarshal(result, &s) != nil || s.SessionID == "" || s.Token == "" {
		return
	}
	fmt.Fprintf(w, "export %s=%s:%s\n", EnvSession, s.SessionID, s.Token)
}

// writeJSON writes v (a json.RawMessage or a value to encode) as one line,
// or indented, without HTML escaping.
func writeJSON(w io.Writer, v any, indent bool) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
