package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/sourcegraph/jsonrpc2"

	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
)

// conn is one WebSocket connection: its bound session, its subscriptions
// and a single writer.
type conn struct {
	srv     *Server
	ws      *websocket.Conn
	ctx     context.Context
	cancel  context.CancelFunc
	writeMu sync.Mutex
	// closeSent is set, under writeMu, once a close frame went out: no
	// frame follows it (RFC 6455, 5.5.1).
	closeSent bool
	session   atomic.Pointer[node.Session]
	// slots holds one token per request in flight (a batch member counts
	// as one): at most rpc.maxPending.
	slots chan struct{}
	// calls counts the requests in flight and the batches waiting for
	// their members.
	calls sync.WaitGroup
	// work hands a request to an idle worker (start); workers counts the
	// workers, idle those waiting on work (they end with ctx).
	work    chan func()
	workers sync.WaitGroup
	idle    atomic.Int32
	// tasks counts the pinger and the subscriptions' notifiers; cleanup
	// waits for them once it has ended their subscriptions.
	tasks sync.WaitGroup
	// sink, when set, receives the frames instead of ws (fuzzing calls
	// dispatch without a socket).
	sink func([]byte)
	// draining is set when the server shuts down.
	draining atomic.Bool

	subMu sync.Mutex
	// subs maps the connection's subscription ids to the hub each belongs
	// to (that of the session bound when it was made).
	subs map[string]*subscriptions.Hub
	// closed is set by cleanup: no subscription registers any more.
	closed bool
}

func newConn(s *Server, ws *websocket.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{srv: s, ws: ws, ctx: ctx, cancel: cancel,
		slots: make(chan struct{}, s.cfg.MaxPending), subs: map[string]*subscriptions.Hub{},
		work: make(chan func())}
}

// subscribeMethod is the method whose only product is its result, the
// subscription id: as a notification it does nothing (see handleOne).
const subscribeMethod = "perun_subscribe"

// response is a JSON-RPC 2.0 response; ID is echoed verbatim.
type response struct {
	JSONRPC string           `json:"jsonrpc"`
	Result  any              `json:"result,omitempty"`
	Error   *jsonrpc2.Error  `json:"error,omitempty"`
	ID      *json.RawMessage `json:"id"`
}

// resultResponse marshals result even when it is null-like.
type resultResponse struct {
	JSONRPC string           `json:"jsonrpc"`
	Result  any              `json:"result"`
	ID      *json.RawMessage `json:"id"`
}

var nullID = json.RawMessage("null")

// Bounds of linger: how long and how much a connection that the server
// closes reads away of what the client still sends.
const (
	lingerTime  = time.Second
	lingerBytes = 4 << 20
)

func (c *conn) serve() {
	defer c.cleanup()
	c.ws.SetReadLimit(c.srv.cfg.MaxMessageSize)
	_ = c.ws.SetReadDeadline(time.Now().Add(c.srv.pongWait))
	c.ws.SetPongHandler(func(string) error { return c.ws.SetReadDeadline(time.Now().Add(c.srv.pongWait)) })
	c.tasks.Add(1)
	go func() {
		defer c.tasks.Done()
		c.pinger()
	}()
	for {
		typ, data, err := c.ws.ReadMessage()
		if c.draining.Load() {
			return
		}
		if errors.Is(err, websocket.ErrReadLimit) {
			// gorilla has sent close 1009; the rest of the message is
			// still unread.
			c.closeSentBy()
			return
		}
		if err != nil {
			return
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(c.srv.pongWait))
		if typ != websocket.TextMessage && typ != websocket.BinaryMessage {
			continue
		}
		if typ == websocket.TextMessage && !utf8.Valid(data) {
			// RFC 6455, 8.1: a text frame that is not UTF-8 fails the
			// connection with 1007; it is not answered.
			c.closeWith(websocket.CloseInvalidFramePayloadData, "text frame is not valid UTF-8")
			return
		}
		if !c.dispatch(data) {
			return
		}
	}
}

// closeWith sends a close frame with code and reason, then lingers.
func (c *conn) closeWith(code int, reason string) {
	c.writeMu.Lock()
	if !c.closeSent {
		c.closeSent = true
		if err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(writeWait)); err != nil {
			c.srv.log.Debug("send close frame", "code", code, "err", err)
		}
	}
	c.writeMu.Unlock()
	c.linger()
}

// closeSentBy records a close frame that gorilla has sent itself (1009 on
// the read limit), then lingers.
func (c *conn) closeSentBy() {
	c.writeMu.Lock()
	c.closeSent = true
	c.writeMu.Unlock()
	c.linger()
}

// linger lets the close frame just sent reach the client. A socket closed
// while it holds unread data is reset (RST) by the kernel, which discards
// what it has not sent yet, the close frame included: the client would
// see 1006 instead of the close code. linger shuts the sending side
// (after the close frame the client reads the end of the stream) and reads
// away what the client still sends until it closes its side, for at most
// lingerTime and lingerBytes; a shutdown ends it at once.
func (c *conn) linger() {
	nc := c.ws.NetConn()
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	if err := nc.SetReadDeadline(time.Now().Add(lingerTime)); err != nil || c.draining.Load() {
		return
	}
	_, _ = io.CopyN(io.Discard, nc, lingerBytes)
}

// acquire takes a slot for one request; it waits while rpc.maxPending
// requests are in flight and reports false if the connection ends first.
func (c *conn) acquire() bool {
	select {
	case c.slots <- struct{}{}:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// idleWorkers is how many of a connection's workers wait for the next
// request once theirs is answered; more run while more requests are in
// flight (up to rpc.maxPending), and end when they have answered. One is
// what a wallet's sequential calls reuse, and it keeps a connection's
// goroutines the same before and after a burst (the load program's leak
// check saw a second idle worker stay after its load).
const idleWorkers = 1

// start runs f as a request in flight holding a slot taken by acquire. An
// idle worker of the connection takes it, or a new one when none waits:
// every request runs at once, as in a goroutine of its own, but a worker
// keeps the stack that go-perun's depth grew (a fresh goroutine grows it
// again on every call).
func (c *conn) start(f func()) {
	c.calls.Add(1)
	select {
	case c.work <- f:
		return
	default:
	}
	c.workers.Add(1)
	go c.worker(f)
}

// worker runs f, then further requests handed over by start while it is
// one of at most idleWorkers waiting; it ends when the connection has
// ended (cleanup cancels ctx, then waits for the workers).
func (c *conn) worker(f func()) {
	defer c.workers.Done()
	for {
		c.runCall(f)
		if c.idle.Add(1) > idleWorkers {
			c.idle.Add(-1)
			return
		}
		select {
		case f = <-c.work:
			c.idle.Add(-1)
		case <-c.ctx.Done():
			return
		}
	}
}

// runCall runs one request and frees its slot.
func (c *conn) runCall(f func()) {
	defer func() { <-c.slots; c.calls.Done() }()
	f()
}

// drain stops reading new messages; the calls in flight still answer and
// the connection is then closed with 1001 going away.
func (c *conn) drain() {
	c.draining.Store(true)
	_ = c.ws.SetReadDeadline(time.Now())
}

func (c *conn) pinger() {
	t := time.NewTicker(c.srv.pingPeriod)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			c.writeMu.Lock()
			var err error
			if !c.closeSent {
				err = c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait))
			}
			c.writeMu.Unlock()
			if err != nil {
				c.ws.Close()
				return
			}
		}
	}
}

// cleanup ends the connection once its read loop has stopped: it ends the
// subscriptions (a subscribe still in flight then fails, see
// addSubscription), waits for the calls in flight to answer, closes the
// socket and waits for the pinger and the notifiers.
func (c *conn) cleanup() {
	c.cancel()
	c.subMu.Lock()
	c.closed = true
	subs := c.subs
	c.subs = map[string]*subscriptions.Hub{}
	c.subMu.Unlock()
	for id, hub := range subs {
		hub.Unsubscribe(id)
	}
	c.calls.Wait() // their answers still go out, unless a close frame went out first
	c.workers.Wait()
	if c.draining.Load() {
		c.writeMu.Lock()
		if !c.closeSent {
			c.closeSent = true
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"), time.Now().Add(time.Second))
		}
		c.writeMu.Unlock()
	}
	c.ws.Close()
	c.tasks.Wait() // their writes fail at once on the closed socket
}

// errSubscriptionOrphaned is the answer to a perun_subscribe whose
// connection closed, or was bound to another session, while it ran.
var errSubscriptionOrphaned = fmt.Errorf("subscribe: the connection closed or was bound to another session during the call: %w", node.ErrUnauthorized)

// addSubscription registers sub, made on session s, with the connection.
// When the connection has closed or is no longer bound to s, nothing would
// ever end sub: it ends sub at once and fails.
func (c *conn) addSubscription(s *node.Session, sub *subscriptions.Subscription) error {
	c.subMu.Lock()
	ok := !c.closed && c.session.Load() == s
	if ok {
		c.subs[sub.ID()] = s.Hub()
	}
	c.subMu.Unlock()
	if !ok {
		s.Hub().Unsubscribe(sub.ID())
		return errSubscriptionOrphaned
	}
	return nil
}

// removeSubscription ends the connection's subscription id and reports
// whether it existed.
func (c *conn) removeSubscription(id string) bool {
	c.subMu.Lock()
	hub, ok := c.subs[id]
	delete(c.subs, id)
	c.subMu.Unlock()
	return ok && hub.Unsubscribe(id)
}

// dropSubscriptions ends the connection's subscriptions on session s.
func (c *conn) dropSubscriptions(s *node.Session) {
	hub := s.Hub()
	var ids []string
	c.subMu.Lock()
	for id, h := range c.subs {
		if h == hub {
			ids = append(ids, id)
			delete(c.subs, id)
		}
	}
	c.subMu.Unlock()
	for _, id := range ids {
		hub.Unsubscribe(id)
	}
}

// startNotifier forwards sub's events to the client until sub ends.
func (c *conn) startNotifier(sub *subscriptions.Subscription) {
	c.tasks.Add(1)
	go func() {
		defer c.tasks.Done()
		prefix := notificationPrefix(sub.ID())
		for ev := range sub.Events() {
			c.notifyShared(prefix, sub.ID(), ev)
		}
		if errors.Is(sub.Err(), subscriptions.ErrOverflow) {
			c.srv.log.Warn("subscription dropped: client too slow", "subscription", sub.ID())
			c.srv.metrics.DroppedSubscriber()
		}
	}()
}

func (c *conn) write(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		c.srv.log.Error("encode response", "err", err)
		return
	}
	c.writeFrame(data)
}

// writeFrame sends data, one JSON text, as one text frame.
func (c *conn) writeFrame(data []byte) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.sink != nil {
		c.sink(data)
		return
	}
	if c.closeSent {
		return // the client is told no more after the close frame
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeWait))
	if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		c.ws.Close()
	}
}

// dispatch starts answering one WebSocket message: a request, a
// notification or a batch. Every request object, alone or a member of a
// batch, takes one slot of rpc.maxPending; dispatch waits for the slots as
// they free up, so the connection is not read from while it is at its
// limit. It reports false if the connection ended first.
func (c *conn) dispatch(data []byte) bool {
	if !utf8.Valid(data) {
		// JSON text is UTF-8 (RFC 8259, 8.1): a binary frame that is not
		// is no JSON, and nothing of it is echoed (a text frame that is
		// not UTF-8 closes the connection, see serve).
		answer := errorResponse(&nullID, newError(jsonrpc2.CodeParseError, "parse error: invalid UTF-8", nil))
		if !c.acquire() {
			return false
		}
		c.start(func() { c.write(answer) })
		return true
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		if !c.acquire() {
			return false
		}
		c.start(func() { c.handleSingle(trimmed) })
		return true
	}
	var elems []json.RawMessage
	var answer *response
	switch err := json.Unmarshal(trimmed, &elems); {
	case err != nil:
		answer = errorResponse(&nullID, newError(jsonrpc2.CodeParseError, "parse error: "+err.Error(), nil))
	case len(elems) == 0:
		answer = errorResponse(&nullID, newError(jsonrpc2.CodeInvalidRequest, "invalid request: empty batch", nil))
	case len(elems) > c.srv.cfg.MaxBatch:
		answer = errorResponse(&nullID, newError(jsonrpc2.CodeInvalidRequest, "invalid request: batch too large", map[string]int{"maxBatch": c.srv.cfg.MaxBatch}))
	}
	if answer != nil {
		if !c.acquire() {
			return false
		}
		c.start(func() { c.write(answer) })
		return true
	}
	b := &batch{out: make([]any, len(elems))}
	ok := true
	for i, el := range elems {
		if ok = c.acquire(); !ok {
			break // the connection ended; nobody waits for the answer
		}
		b.wg.Add(1)
		c.start(func() {
			defer b.wg.Done()
			resp, after := c.handleOne(el)
			b.set(i, resp, after)
		})
	}
	c.calls.Add(1)
	go func() {
		defer c.calls.Done()
		b.wg.Wait()
		c.finishBatch(b)
	}()
	return ok
}

// batch collects the answers of a batch's members.
type batch struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	out    []any
	afters []func()
}

func (b *batch) set(i int, resp any, after func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.out[i] = resp
	if after != nil {
		b.afters = append(b.afters, after)
	}
}

// finishBatch writes the answers of a batch whose members have all
// finished, in request order, then runs their afters.
func (c *conn) finishBatch(b *batch) {
	resps := make([]any, 0, len(b.out))
	for _, r := range b.out {
		if r != nil {
			resps = append(resps, r)
		}
	}
	if len(resps) > 0 {
		c.write(resps)
	}
	for _, f := range b.afters {
		f()
	}
}

// handleSingle answers a message that is not a batch.
func (c *conn) handleSingle(data []byte) {
	env, valid, object := decodeEnvelope(data)
	if !valid {
		c.write(errorResponse(&nullID, newError(jsonrpc2.CodeParseError, "parse error: invalid JSON", nil)))
		return
	}
	resp, after := c.handleEnvelope(env, object)
	if resp != nil {
		c.write(resp)
	}
	if after != nil {
		after()
	}
}

func errorResponse(id *json.RawMessage, e *jsonrpc2.Error) *response {
	return &response{JSONRPC: "2.0", Error: e, ID: id}
}

// envelope holds the members of a request object as they came; a member
// that is absent is nil (null is "null").
type envelope struct {
	JSONRPC json.RawMessage `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  json.RawMessage `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// decodeEnvelope decodes a request object in one pass. valid is false if
// raw is no JSON, object false if it is no JSON object. A request's
// members are matched by their exact names: where a struct decode could
// match another spelling ("ID", "Method", or an escaped name), the members
// are read from a decoded map instead, as the one decode it replaces did.
func decodeEnvelope(raw []byte) (env envelope, valid, object bool) {
	if b := bytes.TrimLeft(raw, " \t\r\n"); len(b) > 0 && b[0] == '{' && plainNames(b) {
		var se *json.SyntaxError
		switch err := json.Unmarshal(b, &env); {
		case err == nil:
			return env, true, true
		case errors.As(err, &se):
			return envelope{}, false, false
		}
	}
	if !json.Valid(raw) {
		return envelope{}, false, false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return envelope{}, true, false
	}
	return envelope{JSONRPC: fields["jsonrpc"], ID: fields["id"], Method: fields["method"], Params: fields["params"]}, true, true
}

// plainNames reports whether raw has no escape, no byte beyond ASCII and
// no string that equals a member of envelope but for case: its strings
// are then what they look like, and a struct decode matches exactly the
// members that a map decode finds.
func plainNames(raw []byte) bool {
	for _, ch := range raw {
		if ch == '\\' || ch >= utf8.RuneSelf {
			return false
		}
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '"' {
			continue
		}
		j := bytes.IndexByte(raw[i+1:], '"')
		if j < 0 {
			return false
		}
		str := raw[i+1 : i+1+j]
		for _, m := range [...]string{"jsonrpc", "id", "method", "params"} {
			if len(str) == len(m) && string(str) != m && strings.EqualFold(string(str), m) {
				return false
			}
		}
		i += j + 1
	}
	return true
}

// handleOne runs one request object. It returns nil for a notification.
func (c *conn) handleOne(raw json.RawMessage) (any, func()) {
	env, valid, object := decodeEnvelope(raw)
	return c.handleEnvelope(env, valid && object)
}

// handleEnvelope runs one decoded request object. It returns nil for a
// notification.
func (c *conn) handleEnvelope(env envelope, object bool) (any, func()) {
	if !object {
		return errorResponse(&nullID, newError(jsonrpc2.CodeInvalidRequest, "invalid request: not a JSON object", nil)), nil
	}
	hasID := env.ID != nil
	var id *json.RawMessage
	if hasID {
		if !validID(env.ID) {
			return errorResponse(&nullID, newError(jsonrpc2.CodeInvalidRequest, "invalid request: id must be a string, number or null", nil)), nil
		}
		id = &env.ID
	} else {
		id = &nullID
	}
	if string(env.JSONRPC) != `"2.0"` {
		var version string
		if err := json.Unmarshal(env.JSONRPC, &version); err != nil || version != "2.0" {
			return errorResponse(id, newError(jsonrpc2.CodeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`, nil)), nil
		}
	}
	var name string
	if err := json.Unmarshal(env.Method, &name); err != nil || name == "" {
		return errorResponse(id, newError(jsonrpc2.CodeInvalidRequest, `invalid request: "method" must be a non-empty string`, nil)), nil
	}
	params, hasParams := env.Params, env.Params != nil
	if hasParams {
		p := bytes.TrimSpace(params)
		if len(p) == 0 || (p[0] != '{' && p[0] != '[') {
			return errorResponse(id, newError(jsonrpc2.CodeInvalidRequest, `invalid request: "params" must be an object or an array`, nil)), nil
		}
	}
	if !hasID && name == subscribeMethod {
		// A subscription made by a notification has an id that nobody
		// learns: its events could not be told apart nor ended. A
		// notification gets no answer, so it subscribes to nothing.
		return nil, nil
	}
	m, ok := c.srv.methods[name]
	var result any
	var after func()
	var rerr *jsonrpc2.Error
	if !ok {
		rerr = newError(jsonrpc2.CodeMethodNotFound, "method not found: "+name, nil)
	} else {
		call := &call{conn: c, params: params, name: name}
		start := time.Now()
		res, err := c.run(m, call)
		var code int64
		if err != nil {
			rerr = toError(err, c.srv.log, name)
			code = rerr.Code
		} else {
			result, after = res, call.after
		}
		c.srv.metrics.Call(name, code, time.Since(start))
	}
	if !hasID {
		return nil, after // a notification gets no answer
	}
	if rerr != nil {
		return errorResponse(id, rerr), nil
	}
	return &resultResponse{JSONRPC: "2.0", Result: result, ID: id}, after
}

func (c *conn) run(m *method, cl *call) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.srv.log.Error("panic in method", "method", cl.name, "panic", r)
			res, err = nil, newError(jsonrpc2.CodeInternalError, "internal error", nil)
		}
	}()
	if m.session && c.session.Load() == nil {
		return nil, errNoSessionErr()
	}
	// A call outlives its connection (a channel_open goes on when the
	// browser tab closes) but not the server's shutdown.
	ctx, cancel := context.WithTimeout(c.srv.callCtx, m.class.timeout())
	defer cancel()
	cl.ctx = ctx
	res, err = m.fn(cl)
	if err != nil && c.srv.callCtx.Err() != nil && classify(err) == nil {
		// The shutdown cancelled the call; whatever go-perun made of that.
		return nil, newError(CodeTimeout, "node is shutting down: the call was interrupted", map[string]int64{"timeout": 0})
	}
	return res, err
}

// validID reports whether raw is a JSON string, number or null. A number
// is never converted (1e400 or a 400-digit integer fit no float64): the
// id is echoed byte for byte as it came.
func validID(raw json.RawMessage) bool {
	if !json.Valid(raw) {
		return false
	}
	switch b := bytes.TrimSpace(raw)[0]; {
	case b == '"', b == 'n', b == '-':
		return true
	default:
		return b >= '0' && b <= '9'
	}
}

// notification is a perun_subscription message (the shape of eth_subscribe).
type notification struct {
	JSONRPC string             `json:"jsonrpc"`
	Method  string             `json:"method"`
	Params  notificationParams `json:"params"`
}

type notificationParams struct {
	Subscription string `json:"subscription"`
	Result       any    `json:"result"`
}

// notificationPrefix is the start of every notification of subscription
// subID, up to its result.
func notificationPrefix(subID string) []byte {
	return []byte(`{"jsonrpc":"2.0","method":"perun_subscription","params":{"subscription":` + strconv.Quote(subID) + `,"result":`)
}

// notifyShared sends a subscription notification of ev, an event of a
// shared subscription (subscriptions.Event, encoded once for all its
// subscribers): the frame is prefix, the event's JSON and the closing
// braces, the bytes notify would write. Other values go through notify.
func (c *conn) notifyShared(prefix []byte, subID string, ev any) {
	e, ok := ev.(*subscriptions.Event)
	if !ok {
		c.notify(subID, ev)
		return
	}
	data, err := e.JSON()
	if err != nil {
		c.srv.log.Error("encode notification", "subscription", subID, "err", err)
		return
	}
	frame := make([]byte, 0, len(prefix)+len(data)+2)
	frame = append(frame, prefix...)
	frame = append(frame, data...)
	c.writeFrame(append(frame, "}}"...))
}

// notify sends a subscription notification.
func (c *conn) notify(subID string, ev any) {
	c.write(notification{JSONRPC: "2.0", Method: "perun_subscription",
		Params: notificationParams{Subscription: subID, Result: ev}})
}
