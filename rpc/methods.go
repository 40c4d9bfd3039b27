package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/perund/perund/contacts"
	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
)

// call is one method invocation.
type call struct {
	conn   *conn
	ctx    context.Context
	name   string
	params json.RawMessage
	// after runs once the response has been written (starts a subscription).
	after func()
}

func (c *call) session() *node.Session { return c.conn.session.Load() }

type param struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Required bool   `json:"required"`
	Desc     string `json:"description,omitempty"`
}

type method struct {
	summary      string
	params       []param
	result       string
	needsSession bool
	timeout      time.Duration
	fn           func(*call) (any, error)
}

const (
	quick = 30 * time.Second
	long  = 30 * time.Minute
)

func errNoSessionErr() error { return fmt.Errorf("%w: %w", errNoSession, node.ErrUnauthorized) }

func methodTable() map[string]*method {
	str := func(name, desc string, req bool) param { return param{name, "string", req, desc} }
	m := map[string]*method{
		"rpc_discover": {summary: "The OpenRPC document of this API.", result: "object", timeout: quick, fn: nil},
		"node_info":    {summary: "Node version, chain, contracts and defaults.", result: "NodeInfo", timeout: quick, fn: nodeInfo},
		"account_new": {summary: "Create a keystore account (dev mode only).", result: "{address}", timeout: quick,
			params: []param{str("password", "keystore password", true)}, fn: accountNew},
		"account_list": {summary: "Addresses of the node's keystore.", result: "[address]", timeout: quick, fn: accountList},
		"session_open": {summary: "Unlock an account and bind its session to this connection.", result: "Session", timeout: quick,
			params: []param{str("account", "address", true), str("password", "", true), {"manualAccept", "boolean", false, "ask before accepting incoming payments"}}, fn: sessionOpen},
		"session_resume": {summary: "Bind an existing session to this connection.", result: "Session", timeout: quick,
			params: []param{str("sessionId", "", true), str("token", "", true)}, fn: sessionResume},
		"session_close": {summary: "Close the bound session.", result: "{}", needsSession: true, timeout: quick,
			params: []param{{"force", "boolean", false, "close even with open channels (they stay persisted)"}}, fn: sessionClose},
		"session_info": {summary: "The bound session.", result: "Session", needsSession: true, timeout: quick, fn: sessionInfo},
		"contacts_add": {summary: "Add a peer to the address book.", result: "Contact", needsSession: true, timeout: quick,
			params: []param{str("alias", "", true), str("address", "", true), str("commAddress", "host:port", true)}, fn: contactsAdd},
		"contacts_list": {summary: "The address book.", result: "[Contact]", needsSession: true, timeout: quick, fn: contactsList},
		"contacts_get": {summary: "One contact.", result: "Contact", needsSession: true, timeout: quick,
			params: []param{str("alias", "", true)}, fn: contactsGet},
		"contacts_remove": {summary: "Remove a contact.", result: "{}", needsSession: true, timeout: quick,
			params: []param{str("alias", "", true)}, fn: contactsRemove},
		"chain_balance": {summary: "On-chain balance.", result: "{address, asset, balance}", needsSession: true, timeout: quick,
			params: []param{str("address", "defaults to the session's", false), str("asset", "ETH", false)}, fn: chainBalance},
		"channel_open": {summary: "Open a channel with a contact; returns once funded.", result: "Channel", needsSession: true, timeout: long,
			params: []param{str("peer", "alias or address of a contact", true), {"balance", "{mine, theirs}", true, "amounts in wei"},
				str("asset", "ETH", false), {"challengeDuration", "integer", false, "seconds"}}, fn: channelOpen},
		"channel_list": {summary: "The session's channels.", result: "[Channel]", needsSession: true, timeout: quick,
			params: []param{str("state", "filter", false)}, fn: channelList},
		"channel_get": {summary: "One channel.", result: "Channel", needsSession: true, timeout: quick,
			params: []param{str("channelId", "", true)}, fn: channelGet},
		"channel_send": {summary: "Pay the peer.", result: "Channel", needsSession: true, timeout: long,
			params: []param{str("channelId", "", true), str("amount", "wei", true)}, fn: channelSend},
		"channel_request": {summary: "Ask the peer to pay.", result: "Channel", needsSession: true, timeout: long,
			params: []param{str("channelId", "", true), str("amount", "wei", true)}, fn: channelRequest},
		"channel_close": {summary: "Settle and withdraw; cooperative, else by dispute.", result: "Channel", needsSession: true, timeout: long,
			params: []param{str("channelId", "", true)}, fn: channelClose},
		"channel_forceClose": {summary: "Register the latest state on-chain and settle after the challenge period.", result: "Channel", needsSession: true, timeout: long,
			params: []param{str("channelId", "", true)}, fn: channelForceClose},
		"dispute_list": {summary: "The on-chain events of the session's channels, oldest first, including those while the user was logged out.", result: "[DisputeEvent]", needsSession: true, timeout: quick,
			params: []param{str("channelId", "only this channel", false)}, fn: disputeList},
		"proposal_list": {summary: "Incoming proposals waiting for an answer.", result: "[Proposal]", needsSession: true, timeout: quick, fn: proposalList},
		"proposal_respond": {summary: "Answer a proposal.", result: "Channel or {}", needsSession: true, timeout: long,
			params: []param{str("proposalId", "", true), {"accept", "boolean", true, ""}, str("reason", "", false)}, fn: proposalRespond},
		"update_list": {summary: "Incoming updates waiting for an answer.", result: "[Update]", needsSession: true, timeout: quick, fn: updateList},
		"update_respond": {summary: "Answer an update.", result: "Channel or {}", needsSession: true, timeout: long,
			params: []param{str("updateId", "", true), {"accept", "boolean", true, ""}, str("reason", "", false)}, fn: updateRespond},
		"perun_subscribe": {summary: "Subscribe to proposals, updates, channels or disputes.", result: "subscription id", needsSession: true, timeout: quick,
			params: []param{str("topic", "proposals | updates | channels | disputes", true)}, fn: subscribe},
		"perun_unsubscribe": {summary: "End a subscription.", result: "boolean", needsSession: true, timeout: quick,
			params: []param{str("subscription", "", true)}, fn: unsubscribe},
	}
	doc := openRPC(m)
	m["rpc_discover"].fn = func(c *call) (any, error) {
		if err := noParams(c.params); err != nil {
			return nil, err
		}
		return doc, nil
	}
	return m
}

// openRPC builds the OpenRPC document from the method table.
func openRPC(m map[string]*method) map[string]any {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sortStrings(names)
	methods := make([]map[string]any, 0, len(names))
	for _, n := range names {
		md := m[n]
		ps := make([]map[string]any, 0, len(md.params))
		for _, p := range md.params {
			ps = append(ps, map[string]any{"name": p.Name, "required": p.Required, "description": p.Desc,
				"schema": map[string]any{"type": jsonType(p.Type)}})
		}
		methods = append(methods, map[string]any{
			"name": n, "summary": md.summary, "paramStructure": "either", "params": ps,
			"result": map[string]any{"name": "result", "description": md.result, "schema": map[string]any{}},
		})
	}
	return map[string]any{
		"openrpc": "1.2.6",
		"info": map[string]any{"title": "perund JSON-RPC API", "version": "1.0.0",
			"description": "Perun state channels over JSON-RPC 2.0 on WebSocket. Params by name, or an array holding that object. Amounts are decimal strings in wei. Notifications: perun_subscription."},
		"methods": methods,
	}
}

func jsonType(t string) string {
	switch t {
	case "string", "boolean", "integer":
		return t
	}
	return "object"
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// decodeParams decodes params given by name or as a one-element array of
// that object into dst, rejecting unknown fields and wrong types (-32602
// naming the field).
func decodeParams(raw json.RawMessage, dst any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	if raw[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			return invalidParams("params", "not a JSON array")
		}
		switch len(arr) {
		case 0:
			raw = []byte("{}")
		case 1:
			raw = bytes.TrimSpace(arr[0])
			if len(raw) == 0 || raw[0] != '{' {
				return invalidParams("params", "an array must hold one object with the named parameters")
			}
		default:
			return invalidParams("params", "an array must hold one object with the named parameters")
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return invalidParams(te.Field, fmt.Sprintf("%s must be of type %s", te.Field, te.Type.String()))
		}
		if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
			f := strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`)
			return invalidParams(f, "unknown parameter "+f)
		}
		return invalidParams("params", err.Error())
	}
	return nil
}

func noParams(raw json.RawMessage) error {
	var v struct{}
	return decodeParams(raw, &v)
}

var decimal = regexp.MustCompile(`^[0-9]{1,78}$`)

// parseAmount parses a non-negative decimal string amount.
func parseAmount(field string, s *string) (*big.Int, error) {
	if s == nil {
		return nil, invalidParams(field, field+" is required")
	}
	if !decimal.MatchString(*s) {
		return nil, invalidParams(field, fmt.Sprintf("%s must be a non-negative decimal integer string in base units, got %q", field, *s))
	}
	v, _ := new(big.Int).SetString(*s, 10)
	return v, nil
}

func required(field string, s *string) (string, error) {
	if s == nil || *s == "" {
		return "", invalidParams(field, field+" is required")
	}
	return *s, nil
}

func parseAddr(field string, s string) (common.Address, error) {
	a, err := contacts.ParseAddress(s)
	if err != nil {
		return a, invalidParams(field, err.Error())
	}
	return a, nil
}

func assetParam(a *string) string {
	if a == nil {
		return ""
	}
	return *a
}

func nodeInfo(c *call) (any, error) {
	if err := noParams(c.params); err != nil {
		return nil, err
	}
	return c.conn.srv.node.Info(), nil
}

func accountNew(c *call) (any, error) {
	var p struct {
		Password *string `json:"password"`
	}
	if err := decodeParams(c.params, &p); err != nil {
		return nil, err
	}
	if p.Password == nil {
		return nil, invalidParams("password", "password is required")
	}
	a, err := c.conn.srv.node.NewAccount(c.ctx, *p.Password)
	if err != nil {
		return nil, err
	}
	return map[string]string{"address": a.Hex()}, nil
}

func accountList(c *call) (any, error) {
	if err := noParams(c.params); err != nil {
		return nil, err
	}
	list, err := c.conn.srv.node.Accounts()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.Hex()
	}
	return out, nil
}

func (c *call) bind(s *node.Session) {
	old := c.conn.session.Swap(s)
	if old != nil && old != s {
		c.conn.dropSubscriptions(old)
	}
}

func sessionOpen(c *call) (any, error) {
	var p struct {
		Account      *string `json:"account"`
		Password     *string `json:"password"`
		ManualAccept *bool   `json:"manualAccept"`
	}
	if err := decodeParams(c.params, &p); err != nil {
		return nil, err
	}
	acc, err := required("account", p.Account)
	if err != nil {
		return nil, err
	}
	addr, err := parseAddr("account", acc)
	if err != nil {
		return nil, err
	}
	if p.Password == nil {
		return nil, invalidParams("password", "password is required")
	}
	manual := p.ManualAccept != nil && *p.ManualAccept
	s, err := c.conn.srv.node.OpenSession(c.ctx, addr, *p.Password, manual)
	if err != nil {
		return nil, err
	}
	if p.ManualAccept != nil {
		s.SetManualAccept(manual)
	}
	c.bind(s)
	info := s.Info(true)
	info.Pending = nil
	return info, nil
}

func sessionResume(c *call) (any, error) {
	var p struct {
		SessionID *string `json:"sessionId"`
		Token     *string `json:"token"`
	}
	if err := decodeParams(c.params, &p); err != nil {
		return nil, err
	}
	id, err := required("sessionId", p.SessionID)
	if err != nil {
		return nil, err
	}
	tok, err := required("token", p.Token)
	if err != nil {
		return nil, err
	}
	s, err := c.conn.srv.node.ResumeSession(id, tok)
	if err != nil {
		return nil, err
	}
	c.bind(s)
	info := s.Info(true)
	info.Pending = nil
	return info, nil
}

func sessionClose(c *call) (any, error) {
	var p struct {
		Force bool `json:"force"`
	}
	if err := decodeParams(c.params, &p); err != nil {
		return nil, err
	}
	s := c.session()
	if err := c.conn.srv.node.CloseSession(c.ctx, s, p.Force); err != nil {
		return nil, err
	}
	c.conn.session.CompareAndSwap(s, nil)
	c.conn.dropSubscriptions(s)
	return struct{}{}, nil
}

func sessionInfo(c *call) (any, error) {
	if err := noParams(c.params); err != nil {
		return nil, err
	}
	return c.session().Info(false), nil
}

type contactParams struct {
	Alias       *string `json:"alias"`
	Address     *string `json:"address"`
	CommAddress *string `json:"commAddress"`
}

func contactsAdd(c *call) (any, error) {
	var p contactParams
	if err := decodeParams(c.params, &p); err != nil {
		return nil, err
	}
	alias, err := required("alias", p.Alias)
	if err != nil {
		return nil, err
	}
	as, err := required("address", p.Address)
	if err != nil {
		return nil, err
	}
	addr, err := parseAddr("address", as)
	if err != nil {
		return nil, err
	}
	ca, err := required("commAddress", p.CommAddress)
	if err != nil {
		return nil, err
	}
	ct, err := c.session().AddContact(contacts.Contact{Alias: alias, Address: addr, CommAddress: ca})
	if err != nil {
		return nil, err
	}
	return contactView(ct), nil
}

func contactView(ct contacts.Contact) map[string]string {
	return map[string]string{"alias": ct.Alias, "address": ct.Address.Hex(), "commAddress": ct.CommAddress}
}

func contactsList(c *call) (any, error) {
	if err := noParams(c.params); err != nil {
		return nil, err
	}
	list := c.session().Contacts().List()
	out := make([]map[string]string, len(list))
	for i, ct := range list {
		out[i] = contactView(ct)
	}
	return out, nil
}

func aliasParam(c *call) (string, error) {
	var p struct {
		Alias *string `json:"alias"`
	}
	if err := decodeParams(c.params, &p); err != nil {
		return "", err
	}
	return required("alias", p.Alias)
}

func contactsGet(c *call) (any, error) {
	alias, err := aliasParam(c)
	if err != nil {
		return nil, err
	}
	ct, err := c.session().Contacts().Get(alias)
	if err != nil {
		return nil, &node.NotFoundError{Resource: "contact", ID: alias}
	}
	return contactView(ct), nil
}

func contactsRemove(c *call) (any, error) {
	alias, err := aliasParam(c)
	if err != nil {
		return nil, err
	}
	if err := c.session().Contacts().Remove(alias); err != nil {
		return nil, &node.NotFoundError{Resource: "contact", ID: alias}
	}
	return struct{}{}, nil
}

func chainBalance(c *call) (any, error) {
	var p struct {
		Address *string `json:"address"`
		Asset   *string `json:"asset"`
	}
	if err := decodeParams(c.params, &p); err != nil {
		return nil, err
	}
	var addr *common.Address
	if p.Address != nil {
		a, err := parseAddr("address", *p.Address)
		if err != nil {
			return nil, err
		}
		addr = &a
	}
	sym := assetParam(p.Asset)
	a, bal, err := c.session().Balance(c.ctx, addr, sym)
	if err != nil {
		return nil, err
	}
	if sym == "" {
		sym = node.AssetETH
	}
	return map[string]string{"address": a.Hex(), "asset": sym, "balance": bal}, nil
}

func channelOpen(c *call) (any, error) {
	var p struct {
		Peer    *string `json:"peer"`
		Balance *struct {
			Mine   *string `json:"mine"`
			Theirs *string `json:"theirs"`
		} `json:"balance"`
		Asset             *string `json:"asset"`
		ChallengeDuration *uint64 `json:"challengeDuration"`
	}
	if err := decodeParams(c.params, &p); err != nil {
		return nil, err
	}
	peer, err := required("peer", p.Peer)
	if err != nil {
		return nil, err
	}
	if p.Balance == nil {
		return nil, invalidParams("balance", "balance {mine, theirs} is required")
	}
	mine, err := parseAmount("balance.mine", p.Balance.Mine)
	if err != nil {
		return nil, err
	}
	theirs, err := parseAmount("balance.theirs", p.Balance.Theirs)
	if err != nil {
		return nil, err
	}
	var cd uint64
	if p.ChallengeDuration != nil {
		if *p.ChallengeDuration == 0 {
			return nil, invalidParams("challengeDuration", "challengeDuration must be at least 1 second")
		}
		cd = *p.ChallengeDuration
	}
	return c.session().OpenChannel(c.ctx, peer, assetParam(p.Asset), mine, theirs, cd)
}

func channelList(c *call) (any, error) {
	var p struct {
		State *string `json:"state"`
	}
	if err := decodeParams(c.params, &p); err != nil {
		return nil, err
	}
	state := ""
	if p.State != nil {
		switch *p.State {
		case node.StateOpening, node.StateOpen, node.StateClosing, node.StateRegistered, node.StateClosed:
			state = *p.State
		default:
			return nil, invalidParams("state", "state must be one of opening, open, closing, registered, closed")
		}
	}
	return c.session().Channels(state), nil
}

func channelIDParam(c *call) (string, error) {
	var p struct {
		ChannelID *string `json:"channelId"`
	}
	if err := decodeParams(c.params, &p); err != nil {
		return "", err
	}
	return validChannelID(p.ChannelID)
}

var hexID = regexp.MustCompile(`^0x[0-9a-fA-F]{64}$`)

func validChannelID(s *string) (string, error) {
	id, err := required("channelId", s)
	if err != nil {
		return "", err
	}
	if !hexID.MatchString(id) {
		return "", invalidParams("channelId", "channelId must be 0x followed by 64 hex digits")
	}
	return strings.ToLower(id[:2]) + strings.ToLower(id[2:]), nil
}

func channelGet(c *call) (any, error) {
	id, err := channelIDParam(c)
	if err != nil {
		return nil, err
	}
	return c.session().Channel(id)
}

func transferParams(c *call) (string, *big.Int, error) {
	var p struct {
		ChannelID *string `json:"channelId"`
		Amount    *string `json:"amount"`
	}
	if err := decodeParams(c.params, &p); err != nil {
		return "", nil, err
	}
	id, err := validChannelID(p.ChannelID)
	if err != nil {
		return "", nil, err
	}
	amt, err := parseAmount("amount", p.Amount)
	if err != nil {
		return "", nil, err
	}
	if amt.Sign() == 0 {
		return "", nil, invalidParams("amount", "amount must be positive")
	}
	return id, amt, nil
}

func channelSend(c *call) (any, error) {
	id, amt, err := transferParams(c)
	if err != nil {
		return nil, err
	}
	return c.session().Send(c.ctx, id, amt)
}

func channelRequest(c *call) (any, error) {
	id, amt, err := transferParams(c)
	if err != nil {
		return nil, err
	}
	return c.session().Request(c.ctx, id, amt)
}

func channelClose(c *call) (any, error) {
	id, err := channelIDParam(c)
	if err != nil {
		return nil, err
	}
	return c.session().Close(c.ctx, id)
}

func channelForceClose(c *call) (any, error) {
	id, err := channelIDParam(c)
	if err != nil {
		return nil, err
	}
	return c.session().ForceClose(c.ctx, id)
}

func disputeList(c *call) (any, error) {
	var p struct {
		ChannelID *string `json:"channelId"`
	}
	if err := decodeParams(c.params, &p); err != nil {
		return nil, err
	}
	id := ""
	if p.ChannelID != nil {
		id = *p.ChannelID
	}
	return c.session().Disputes(id)
}

func proposalList(c *call) (any, error) {
	if err := noParams(c.params); err != nil {
		return nil, err
	}
	return c.session().Proposals(), nil
}

func decodeRespond(c *call, idField string) (string, bool, string, error) {
	var p struct {
		Accept *bool   `json:"accept"`
		Reason *string `json:"reason"`
		PID    *string `json:"proposalId"`
		UID    *string `json:"updateId"`
	}
	if err := decodeParams(c.params, &p); err != nil {
		return "", false, "", err
	}
	idp, other := p.PID, p.UID
	if idField == "updateId" {
		idp, other = p.UID, p.PID
	}
	if other != nil {
		f := "updateId"
		if idField == "updateId" {
			f = "proposalId"
		}
		return "", false, "", invalidParams(f, "unknown parameter "+f)
	}
	id, err := required(idField, idp)
	if err != nil {
		return "", false, "", err
	}
	if !hexID.MatchString(id) {
		return "", false, "", invalidParams(idField, idField+" must be 0x followed by 64 hex digits")
	}
	if p.Accept == nil {
		return "", false, "", invalidParams("accept", "accept (boolean) is required")
	}
	reason := ""
	if p.Reason != nil {
		reason = *p.Reason
	}
	return strings.ToLower(id), *p.Accept, reason, nil
}

func proposalRespond(c *call) (any, error) {
	id, accept, reason, err := decodeRespond(c, "proposalId")
	if err != nil {
		return nil, err
	}
	ch, err := c.session().RespondProposal(c.ctx, id, accept, reason)
	if err != nil {
		return nil, err
	}
	if ch == nil {
		return struct{}{}, nil
	}
	return ch, nil
}

func updateList(c *call) (any, error) {
	if err := noParams(c.params); err != nil {
		return nil, err
	}
	return c.session().Updates(), nil
}

func updateRespond(c *call) (any, error) {
	id, accept, reason, err := decodeRespond(c, "updateId")
	if err != nil {
		return nil, err
	}
	ch, err := c.session().RespondUpdate(c.ctx, id, accept, reason)
	if err != nil {
		return nil, err
	}
	if ch == nil {
		return struct{}{}, nil
	}
	return ch, nil
}

// stringOrObject decodes ["x"], {"key": "x"} or [{"key": "x"}].
func stringOrObject(raw json.RawMessage, key string) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err == nil && len(arr) == 1 {
			var s string
			if json.Unmarshal(arr[0], &s) == nil {
				return s, nil
			}
		}
	}
	m := map[string]*string{}
	if err := decodeParams(raw, &m); err != nil {
		return "", err
	}
	for k := range m {
		if k != key {
			return "", invalidParams(k, "unknown parameter "+k)
		}
	}
	v := m[key]
	if v == nil {
		return "", invalidParams(key, key+" is required")
	}
	return *v, nil
}

func subscribe(c *call) (any, error) {
	topic, err := stringOrObject(c.params, "topic")
	if err != nil {
		return nil, err
	}
	t, err := subscriptions.ParseTopic(topic)
	if err != nil {
		return nil, invalidParams("topic", err.Error())
	}
	s := c.session()
	sub, err := s.Hub().Subscribe(t)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", t, err)
	}
	if err := c.conn.addSubscription(s, sub); err != nil {
		return nil, err
	}
	conn := c.conn
	c.after = func() { conn.startNotifier(sub) }
	return sub.ID(), nil
}

func unsubscribe(c *call) (any, error) {
	id, err := stringOrObject(c.params, "subscription")
	if err != nil {
		return nil, err
	}
	return c.conn.removeSubscription(id), nil
}
