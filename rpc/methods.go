package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/perund/perund/contacts"
	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
)

// Every method of the API is declared once, below, in methodTable: a params
// struct, a result type, a handler and a spec. Decoding, required fields,
// the session check, the timeout and the error mapping happen in one place
// (register and conn.run); the OpenRPC document (openrpc.go), docs/api.md
// and the JavaScript client's types are derived from the same table.

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

// timeoutClass says how long a method may take: it answers at once, or it
// waits for the peer, or for the chain. The document publishes it
// (x-timeout) and clients derive their timeouts from it.
type timeoutClass string

// The timeout classes.
const (
	classQuick timeoutClass = "quick"
	classPeer  timeoutClass = "peer"
	classChain timeoutClass = "chain"
)

// timeout is the server-side bound of a call of the class.
func (t timeoutClass) timeout() time.Duration {
	if t == classQuick {
		return 30 * time.Second
	}
	return 30 * time.Minute
}

// spec is what the document says of a method beyond its types.
type spec struct {
	summary string
	desc    string
	// session: the method needs a session bound to the connection.
	session bool
	class   timeoutClass
	// errors are the application error codes the method can return besides
	// the ones every method can (invalid params, and unauthorized for a
	// method that needs a session).
	errors []int64
	// onChain says what the call does on the chain, for docs/api.md.
	onChain string
}

// example is a call of a method with its answer, for the document.
type example[P, R any] struct {
	name   string
	params P
	result R
}

// method is a registered method.
type method struct {
	spec
	params, result reflect.Type
	examples       []exampleDoc
	fn             func(*call) (any, error)
}

type exampleDoc struct {
	name           string
	params, result any
}

// register adds a method: fn gets its params decoded and validated.
func register[P, R any](m map[string]*method, name string, sp spec, fn func(*call, *P) (R, error), exs ...example[P, R]) {
	if _, dup := m[name]; dup {
		panic("rpc: method registered twice: " + name)
	}
	md := &method{spec: sp, params: reflect.TypeFor[P](), result: reflect.TypeFor[R]()}
	for _, ex := range exs {
		md.examples = append(md.examples, exampleDoc{ex.name, ex.params, ex.result})
	}
	md.fn = func(c *call) (any, error) {
		var p P
		if err := decodeParams(c.params, &p); err != nil {
			return nil, err
		}
		if v, ok := any(&p).(validator); ok {
			if err := v.validate(); err != nil {
				return nil, err
			}
		}
		return fn(c, &p)
	}
	m[name] = md
}

// validator is a params struct with checks across or beyond its fields
// own types; register runs it after decoding.
type validator interface{ validate() error }

func (p *transferParams) validate() error {
	if p.Amount.Sign() == 0 {
		return invalidParams("amount", "amount must be positive")
	}
	return nil
}

func (p *channelOpenParams) validate() error {
	if p.ChallengeDuration != nil && *p.ChallengeDuration == 0 {
		return invalidParams("challengeDuration", "challengeDuration must be at least 1 second")
	}
	return nil
}

func errNoSessionErr() error { return fmt.Errorf("%w: %w", errNoSession, node.ErrUnauthorized) }

// exampleValues are the values the document's examples share.
type exampleValues struct {
	alice, bob Address
	channel    Hash
	time       time.Time
}

func newExampleValues() exampleValues {
	return exampleValues{
		alice:   Address{common.HexToAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")},
		bob:     Address{common.HexToAddress("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")},
		channel: Hash("0x3fa1c0de" + strings.Repeat("0", 56)),
		time:    time.Date(2026, 12, 4, 10, 42, 0, 0, time.UTC),
	}
}

func exAmount(s string) Amount {
	var a Amount
	a.SetString(s, 10)
	return a
}

func (ex exampleValues) channelInfo(version uint64, mine, theirs, state string) node.ChannelInfo {
	return node.ChannelInfo{ChannelID: string(ex.channel), Peer: "bob", Asset: node.AssetETH,
		Balance: node.Balance{Mine: mine, Theirs: theirs}, Version: version, State: state,
		ChallengeDuration: 60, OpenedAt: ex.time, TxHashes: []string{}}
}

// closedChannel is the example channel closed by "agreement" or "dispute".
func (ex exampleValues) closedChannel(by string) node.ChannelInfo {
	ci := ex.channelInfo(4, "850000000000000000", "150000000000000000", node.StateClosed)
	ci.ClosedAt, ci.ClosedBy = &ex.time, by
	return ci
}

// methodTable declares every method of the API.
func methodTable() map[string]*method {
	m := map[string]*method{}
	ex := newExampleValues()
	quick := func(summary string) spec { return spec{summary: summary, class: classQuick} }
	withSession := func(s spec) spec { s.session = true; return s }

	register[noParams, map[string]any](m, "rpc_discover", quick("The OpenRPC document of this API."), nil)
	register(m, "node_info", quick("Node version, chain, contracts, assets and defaults."),
		func(c *call, _ *noParams) (node.NodeInfo, error) { return c.conn.srv.node.Info(), nil })
	register(m, "account_new", spec{summary: "Create a keystore account (only where the node allows it: perund dev).",
		class: classQuick, errors: []int64{CodeUnauthorized}}, accountNew,
		example[accountNewParams, accountResult]{"create", accountNewParams{Password: "correct horse"}, accountResult{ex.alice}})
	register(m, "account_list", quick("Addresses of the node's keystore."),
		func(c *call, _ *noParams) ([]Address, error) {
			list, err := c.conn.srv.node.Accounts()
			out := make([]Address, len(list))
			for i, a := range list {
				out[i] = Address{a}
			}
			return out, err
		})
	register(m, "session_open", spec{summary: "Unlock an account and bind its session to this connection.",
		desc:  "Answers at once; channels whose peer is not reachable are restored as stored and say unsynced. The token resumes the session from another connection.",
		class: classQuick, errors: []int64{CodeUnauthorized, CodeNotFound}}, sessionOpen,
		example[sessionOpenParams, node.SessionInfo]{"alice logs in", sessionOpenParams{Account: ex.alice, Password: "alice"},
			node.SessionInfo{SessionID: "5b1e2c9a0f4d7e31", Token: "9c2f0d4e6a8b1c3d5e7f9a0b2c4d6e8f", Address: ex.alice.Hex(), CommAddress: "127.0.0.1:8401", Channels: []node.ChannelInfo{}}})
	register(m, "session_resume", spec{summary: "Bind an existing session to this connection.",
		class: classQuick, errors: []int64{CodeUnauthorized}}, sessionResume,
		example[sessionResumeParams, node.SessionInfo]{"after a reconnect", sessionResumeParams{SessionID: "5b1e2c9a0f4d7e31", Token: "9c2f0d4e6a8b1c3d5e7f9a0b2c4d6e8f"},
			node.SessionInfo{SessionID: "5b1e2c9a0f4d7e31", Token: "9c2f0d4e6a8b1c3d5e7f9a0b2c4d6e8f", Address: ex.alice.Hex(), CommAddress: "127.0.0.1:8401", Channels: []node.ChannelInfo{}}})
	register(m, "session_close", withSession(spec{summary: "Close the bound session.",
		desc:  "Refused with 1003 while channels are open, unless force: their channels stay persisted and watched by the node.",
		class: classQuick, errors: []int64{CodeConflict}}), sessionClose)
	register(m, "session_info", withSession(quick("The bound session.")),
		func(c *call, _ *noParams) (node.SessionInfo, error) { return c.session().Info(false), nil })
	register(m, "contacts_add", withSession(spec{summary: "Add a peer to the address book.",
		class: classQuick, errors: []int64{CodeConflict}}), contactsAdd,
		example[Contact, Contact]{"bob", Contact{Alias: "bob", Address: ex.bob, CommAddress: "127.0.0.1:8401"}, Contact{Alias: "bob", Address: ex.bob, CommAddress: "127.0.0.1:8401"}})
	register(m, "contacts_list", withSession(quick("The address book.")),
		func(c *call, _ *noParams) ([]Contact, error) {
			list := c.session().Contacts().List()
			out := make([]Contact, len(list))
			for i, ct := range list {
				out[i] = contactView(ct)
			}
			return out, nil
		})
	register(m, "contacts_get", withSession(spec{summary: "One contact.", class: classQuick, errors: []int64{CodeNotFound}}),
		func(c *call, p *aliasParams) (Contact, error) {
			ct, err := c.session().Contacts().Get(p.Alias)
			if err != nil {
				return Contact{}, &node.NotFoundError{Resource: "contact", ID: p.Alias}
			}
			return contactView(ct), nil
		},
		example[aliasParams, Contact]{"bob", aliasParams{Alias: "bob"}, Contact{Alias: "bob", Address: ex.bob, CommAddress: "127.0.0.1:8401"}})
	register(m, "contacts_remove", withSession(spec{summary: "Remove a contact.", class: classQuick, errors: []int64{CodeNotFound}}),
		func(c *call, p *aliasParams) (Empty, error) {
			if err := c.session().Contacts().Remove(p.Alias); err != nil {
				return Empty{}, &node.NotFoundError{Resource: "contact", ID: p.Alias}
			}
			return Empty{}, nil
		},
		example[aliasParams, Empty]{"carol", aliasParams{Alias: "carol"}, Empty{}})
	register(m, "chain_balance", withSession(spec{summary: "On-chain balance of an asset.",
		class: classQuick, errors: []int64{CodeChain}, onChain: "reads the balance (eth_getBalance, or the token's balanceOf)"}), chainBalance,
		example[chainBalanceParams, chainBalanceResult]{"ETH of the session's account", chainBalanceParams{},
			chainBalanceResult{ex.alice, node.AssetETH, exAmount("100000000000000000000")}})
	register(m, "channel_open", withSession(spec{summary: "Open a channel with a contact; answers once it is funded.",
		desc:    "The peer must accept (its proposals topic); both deposits are then made on chain.",
		class:   classChain,
		errors:  []int64{CodeNotFound, CodePeerUnreachable, CodePeerRejected, CodeTimeout, CodeInsufficientFunds, CodeChain},
		onChain: "deposits the user's share into the asset holder (an ERC20 token is approved first); waits for the peer's deposit"}), channelOpen,
		example[channelOpenParams, node.ChannelInfo]{"1 ETH with bob", channelOpenParams{Peer: "bob", Balance: balanceParams{Mine: exAmount("1000000000000000000"), Theirs: exAmount("0")}},
			ex.channelInfo(0, "1000000000000000000", "0", node.StateOpen)})
	register(m, "channel_list", withSession(quick("The session's channels.")),
		func(c *call, p *channelListParams) ([]node.ChannelInfo, error) {
			return c.session().Channels(string(p.State)), nil
		})
	register(m, "channel_get", withSession(spec{summary: "One channel.", class: classQuick, errors: []int64{CodeNotFound}}),
		func(c *call, p *channelParams) (node.ChannelInfo, error) {
			return c.session().Channel(string(p.ChannelID))
		},
		example[channelParams, node.ChannelInfo]{"a channel", channelParams{ChannelID: ex.channel}, ex.channelInfo(3, "700000000000000000", "300000000000000000", node.StateOpen)})
	transfer := spec{class: classPeer,
		errors: []int64{CodeNotFound, CodePeerUnreachable, CodePeerRejected, CodeTimeout, CodeInsufficientFunds, CodeWrongState}}
	send := transfer
	send.summary = "Pay the peer: a new state signed by both, at once off chain."
	send.desc = "Calls of one channel that wait while an update is in flight are carried by the next update together: " +
		"each is answered with the version of the state that includes it, once both signed and stored it; " +
		"one the balance cannot cover after those queued before it fails alone (1007). The peer sees one payment of their sum."
	register(m, "channel_send", withSession(send),
		func(c *call, p *transferParams) (node.ChannelInfo, error) {
			return c.session().Send(c.ctx, string(p.ChannelID), &p.Amount.Int)
		},
		example[transferParams, node.ChannelInfo]{"pay 0.25 ETH", transferParams{ChannelID: ex.channel, Amount: exAmount("250000000000000000")},
			ex.channelInfo(1, "750000000000000000", "250000000000000000", node.StateOpen)})
	req := transfer
	req.summary = "Ask the peer to pay; answers once the peer accepted the new state."
	register(m, "channel_request", withSession(req),
		func(c *call, p *transferParams) (node.ChannelInfo, error) {
			return c.session().Request(c.ctx, string(p.ChannelID), &p.Amount.Int)
		},
		example[transferParams, node.ChannelInfo]{"ask for 0.1 ETH", transferParams{ChannelID: ex.channel, Amount: exAmount("100000000000000000")},
			ex.channelInfo(2, "850000000000000000", "150000000000000000", node.StateOpen)})
	register(m, "channel_close", withSession(spec{summary: "Settle and withdraw; cooperative, else by dispute.",
		desc:    "A channel that is already closed answers with how it closed (closedBy, and the outcome of a lost dispute).",
		class:   classChain,
		errors:  []int64{CodeNotFound, CodeTimeout, CodeChain, CodeWrongState},
		onChain: "cooperative: a final state both signed is concluded and the user's share withdrawn; without the peer: the latest state is registered, and after the challenge period concluded and withdrawn"}),
		func(c *call, p *channelParams) (node.ChannelInfo, error) {
			return c.session().Close(c.ctx, string(p.ChannelID))
		},
		example[channelParams, node.ChannelInfo]{"cooperative", channelParams{ChannelID: ex.channel}, ex.closedChannel("agreement")})
	register(m, "channel_forceClose", withSession(spec{summary: "Register the latest state on chain and settle after the challenge period.",
		class:   classChain,
		errors:  []int64{CodeNotFound, CodeTimeout, CodeChain, CodeWrongState},
		onChain: "registers the latest state (a challenge period starts; a newer state of the peer wins), then concludes and withdraws"}),
		func(c *call, p *channelParams) (node.ChannelInfo, error) {
			return c.session().ForceClose(c.ctx, string(p.ChannelID))
		},
		example[channelParams, node.ChannelInfo]{"without the peer", channelParams{ChannelID: ex.channel}, ex.closedChannel("dispute")})
	register(m, "dispute_list", withSession(quick("The on-chain events of the session's channels, oldest first, including those while the user was logged out.")),
		func(c *call, p *disputeListParams) ([]node.DisputeEvent, error) {
			return c.session().Disputes(string(p.ChannelID))
		})
	register(m, "proposal_list", withSession(quick("Incoming channel proposals waiting for an answer.")),
		func(c *call, _ *noParams) ([]node.ProposalInfo, error) { return c.session().Proposals(), nil })
	register(m, "proposal_respond", withSession(spec{summary: "Answer a channel proposal; an accepted one answers once the channel is funded.",
		class:   classChain,
		errors:  []int64{CodeNotFound, CodePeerUnreachable, CodeTimeout, CodeInsufficientFunds, CodeChain},
		onChain: "accept: deposits the user's share, waits for the proposer's deposit"}),
		func(c *call, p *proposalRespondParams) (Maybe[node.ChannelInfo], error) {
			ch, err := c.session().RespondProposal(c.ctx, string(p.ProposalID), p.Accept, p.Reason)
			return Maybe[node.ChannelInfo]{ch}, err
		},
		example[proposalRespondParams, Maybe[node.ChannelInfo]]{"reject", proposalRespondParams{ProposalID: ex.channel, Reason: "not now"}, Maybe[node.ChannelInfo]{}})
	register(m, "update_list", withSession(quick("Incoming channel updates waiting for an answer.")),
		func(c *call, _ *noParams) ([]node.UpdateInfo, error) { return c.session().Updates(), nil })
	register(m, "update_respond", withSession(spec{summary: "Answer a channel update (a request to pay, a close, a payment when manualAccept).",
		class:  classPeer,
		errors: []int64{CodeNotFound, CodePeerUnreachable, CodeTimeout, CodeInsufficientFunds}}),
		func(c *call, p *updateRespondParams) (Maybe[node.ChannelInfo], error) {
			ch, err := c.session().RespondUpdate(c.ctx, string(p.UpdateID), p.Accept, p.Reason)
			return Maybe[node.ChannelInfo]{ch}, err
		},
		example[updateRespondParams, Maybe[node.ChannelInfo]]{"pay what bob asked", updateRespondParams{UpdateID: ex.channel, Accept: true},
			Maybe[node.ChannelInfo]{func() *node.ChannelInfo {
				ci := ex.channelInfo(5, "750000000000000000", "250000000000000000", node.StateOpen)
				return &ci
			}()}})
	register(m, "perun_subscribe", withSession(spec{summary: "Subscribe to a topic; notifications arrive as perun_subscription.",
		desc:  "Each notification is {\"jsonrpc\":\"2.0\",\"method\":\"perun_subscription\",\"params\":{\"subscription\":ID,\"result\":PAYLOAD}}; x-notifications lists the topics and their payloads. Sent as a notification (without id) it subscribes to nothing.",
		class: classQuick}), subscribe,
		example[subscribeParams, string]{"channels", subscribeParams{Topic: "channels"}, "0x6c3b1f0e9a2d4c57"})
	register(m, "perun_unsubscribe", withSession(quick("End a subscription; false when there was none.")),
		func(c *call, p *unsubscribeParams) (bool, error) {
			return c.conn.removeSubscription(p.Subscription), nil
		},
		example[unsubscribeParams, bool]{"channels", unsubscribeParams{Subscription: "0x6c3b1f0e9a2d4c57"}, true})

	doc := openRPC(m)
	m["rpc_discover"].fn = func(c *call) (any, error) {
		var p noParams
		if err := decodeParams(c.params, &p); err != nil {
			return nil, err
		}
		return doc, nil
	}
	return m
}

// The params of the methods (decode.go says how their tags are read).
type (
	noParams         struct{}
	accountNewParams struct {
		Password string `json:"password" rpc:"required" doc:"password that encrypts the new key file"`
	}
	sessionOpenParams struct {
		Account      Address `json:"account" rpc:"required" doc:"the account's address (account_list)"`
		Password     string  `json:"password" rpc:"required" doc:"the account's keystore password"`
		ManualAccept *bool   `json:"manualAccept" doc:"ask before accepting incoming payments (default: accepted at once)"`
	}
	sessionResumeParams struct {
		SessionID string `json:"sessionId" rpc:"required"`
		Token     string `json:"token" rpc:"required" doc:"the token session_open returned"`
	}
	sessionCloseParams struct {
		Force bool `json:"force" doc:"close even with open channels (they stay persisted and watched)"`
	}
	aliasParams struct {
		Alias string `json:"alias" rpc:"required"`
	}
	chainBalanceParams struct {
		Address *Address `json:"address" doc:"defaults to the session's account"`
		Asset   Symbol   `json:"asset" doc:"defaults to ETH"`
	}
	balanceParams struct {
		Mine   Amount `json:"mine" rpc:"required" doc:"the user's deposit"`
		Theirs Amount `json:"theirs" rpc:"required" doc:"the peer's deposit"`
	}
	channelOpenParams struct {
		Peer              string        `json:"peer" rpc:"required" doc:"alias or address of a contact"`
		Balance           balanceParams `json:"balance" rpc:"required" doc:"the initial balance, in base units"`
		Asset             Symbol        `json:"asset" doc:"defaults to ETH"`
		ChallengeDuration *uint64       `json:"challengeDuration" doc:"seconds; defaults to node_info.challengeDuration, at least channel.minChallengeDuration"`
	}
	channelListParams struct {
		State ChannelState `json:"state" doc:"only channels in this state"`
	}
	channelParams struct {
		ChannelID Hash `json:"channelId" rpc:"required"`
	}
	transferParams struct {
		ChannelID Hash   `json:"channelId" rpc:"required"`
		Amount    Amount `json:"amount" rpc:"required" doc:"positive, in base units of the channel's asset"`
	}
	disputeListParams struct {
		ChannelID Hash `json:"channelId" doc:"only this channel's events"`
	}
	proposalRespondParams struct {
		ProposalID Hash   `json:"proposalId" rpc:"required"`
		Accept     bool   `json:"accept" rpc:"required"`
		Reason     string `json:"reason" doc:"told to the proposer on a rejection"`
	}
	updateRespondParams struct {
		UpdateID Hash   `json:"updateId" rpc:"required"`
		Accept   bool   `json:"accept" rpc:"required"`
		Reason   string `json:"reason" doc:"told to the peer on a rejection"`
	}
	subscribeParams struct {
		Topic Topic `json:"topic" rpc:"required"`
	}
	unsubscribeParams struct {
		Subscription string `json:"subscription" rpc:"required" doc:"the id perun_subscribe returned"`
	}
)

// Results that are not the node's views.
type (
	accountResult struct {
		Address Address `json:"address"`
	}
	chainBalanceResult struct {
		Address Address `json:"address"`
		Asset   string  `json:"asset"`
		Balance Amount  `json:"balance"`
	}
)

// Contact is an entry of the user's address book.
type Contact struct {
	Alias       string  `json:"alias" rpc:"required"`
	Address     Address `json:"address" rpc:"required"`
	CommAddress string  `json:"commAddress" rpc:"required" doc:"the peer's node, host:port of its peer port"`
}

func contactView(ct contacts.Contact) Contact {
	return Contact{Alias: ct.Alias, Address: Address{ct.Address}, CommAddress: ct.CommAddress}
}

func accountNew(c *call, p *accountNewParams) (accountResult, error) {
	a, err := c.conn.srv.node.NewAccount(c.ctx, p.Password)
	return accountResult{Address{a}}, err
}

func (c *call) bind(s *node.Session) {
	old := c.conn.session.Swap(s)
	if old != nil && old != s {
		c.conn.dropSubscriptions(old)
	}
}

func sessionOpen(c *call, p *sessionOpenParams) (node.SessionInfo, error) {
	manual := p.ManualAccept != nil && *p.ManualAccept
	s, err := c.conn.srv.node.OpenSession(c.ctx, p.Account.Address, p.Password, manual)
	if err != nil {
		return node.SessionInfo{}, err
	}
	if p.ManualAccept != nil {
		s.SetManualAccept(manual)
	}
	c.bind(s)
	info := s.Info(true)
	info.Pending = nil
	return info, nil
}

func sessionResume(c *call, p *sessionResumeParams) (node.SessionInfo, error) {
	s, err := c.conn.srv.node.ResumeSession(p.SessionID, p.Token)
	if err != nil {
		return node.SessionInfo{}, err
	}
	c.bind(s)
	info := s.Info(true)
	info.Pending = nil
	return info, nil
}

func sessionClose(c *call, p *sessionCloseParams) (Empty, error) {
	s := c.session()
	if err := c.conn.srv.node.CloseSession(c.ctx, s, p.Force); err != nil {
		return Empty{}, err
	}
	c.conn.session.CompareAndSwap(s, nil)
	c.conn.dropSubscriptions(s)
	return Empty{}, nil
}

func contactsAdd(c *call, p *Contact) (Contact, error) {
	ct, err := c.session().AddContact(contacts.Contact{Alias: p.Alias, Address: p.Address.Address, CommAddress: p.CommAddress})
	if err != nil {
		return Contact{}, err
	}
	return contactView(ct), nil
}

func chainBalance(c *call, p *chainBalanceParams) (chainBalanceResult, error) {
	var addr *common.Address
	if p.Address != nil {
		addr = &p.Address.Address
	}
	a, bal, err := c.session().Balance(c.ctx, addr, string(p.Asset))
	if err != nil {
		return chainBalanceResult{}, err
	}
	sym := string(p.Asset)
	if sym == "" {
		sym = node.AssetETH
	}
	var amt Amount
	amt.SetString(bal, 10)
	return chainBalanceResult{Address{a}, sym, amt}, nil
}

func channelOpen(c *call, p *channelOpenParams) (node.ChannelInfo, error) {
	var cd uint64
	if p.ChallengeDuration != nil {
		cd = *p.ChallengeDuration
	}
	return c.session().OpenChannel(c.ctx, p.Peer, string(p.Asset), &p.Balance.Mine.Int, &p.Balance.Theirs.Int, cd)
}

func subscribe(c *call, p *subscribeParams) (string, error) {
	s := c.session()
	sub, err := s.Hub().SubscribeShared(subscriptions.Topic(p.Topic))
	if err != nil {
		return "", fmt.Errorf("subscribe to %s: %w", p.Topic, err)
	}
	if err := c.conn.addSubscription(s, sub); err != nil {
		return "", err
	}
	conn := c.conn
	c.after = func() { conn.startNotifier(sub) }
	return sub.ID(), nil
}
