package node

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	ethwallet "github.com/perun-network/perun-eth-backend/wallet"
	"github.com/perun-network/perun-eth-backend/wallet/simple"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/channel/persistence"
	"perun.network/go-perun/client"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"
	wirenet "perun.network/go-perun/wire/net"
	"perun.network/go-perun/wire/protobuf"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/contacts"
	"github.com/perund/perund/peer"
	"github.com/perund/perund/store"
	"github.com/perund/perund/subscriptions"
	"github.com/perund/perund/wireid"
)

// adjudicatorGasLimit caps the gas of a session's adjudicator transactions
// (register, conclude, withdraw); an ETH deposit's limit is estimated.
const adjudicatorGasLimit = 1_000_000

// Session is one user's presence on the node: their go-perun client and
// everything it needs. Its methods are safe for concurrent use.
type Session struct {
	n     *Node
	id    string
	token string // "" for a session restored from its record
	// tokenHash is the stored form of the token (sessionRecord).
	tokenHash string
	addr      common.Address
	key       *ecdsa.PrivateKey
	wireAcc   *wireid.Account
	listener  *peer.Listener // the session's share of the node's peer port
	bus       *wirenet.Bus
	client    *client.Client
	adj       *resilientAdjudicator
	wallet    wallet.Wallet    // the user's key, for signatures outside go-perun (withdrawals), behind the node's gate
	ethAcc    accounts.Account // the user's account, sending transactions
	pr        store.View
	contacts  *contacts.Book
	hub       *subscriptions.Hub
	manual    bool
	commAddr  string

	mu        sync.Mutex
	channels  map[channel.ID]*channelEntry
	proposals map[string]*pendingProposal
	// syncWait holds the channels waiting for a sync answer (sync.go).
	syncWait map[channel.ID]syncWaiter
	// unsynced are the channels whose peer did not answer the sync at
	// login (sync.go).
	unsynced map[channel.ID]bool
	// toSync are the persisted channels start syncs (set up by newSession).
	toSync   []*persistence.Channel
	updates  map[string]*pendingUpdate
	meta     sessionMeta
	stopping bool
	handlers sync.WaitGroup
	stop     chan struct{}
	// tasks owns the session's goroutines: shutdown cancels and waits.
	tasks *taskGroup
}

// sessionMeta is what the session keeps beside go-perun's database.
type sessionMeta struct {
	Channels map[string]*channelMeta `json:"channels"`
	Closed   []ChannelInfo           `json:"closed"`
}

type channelMeta struct {
	OpenedAt time.Time `json:"openedAt"`
	TxHashes []string  `json:"txHashes"`
}

// newSession sets a session up to the point where peers can reach it: its
// wire bus and listener, the go-perun client and the channel database. It
// registers the waiters for the sync answers of its persisted channels
// before its listener accepts anything, so that a peer starting at the same
// time (another session of this node, above all) finds them; start then
// syncs, restores and handles.
func newSession(n *Node, key *ecdsa.PrivateKey, manual bool, rec *sessionRecord) (_ *Session, err error) {
	addr := crypto.PubkeyToAddress(key.PublicKey)
	s := &Session{
		manual: manual, n: n, id: randomHex(16), token: randomHex(32), addr: addr, key: key,
		wireAcc:   wireid.NewAccount(key).WithGate(n.checkGate),
		hub:       subscriptions.NewHub(subscriptions.DefaultBuffer),
		channels:  map[channel.ID]*channelEntry{},
		proposals: map[string]*pendingProposal{},
		updates:   map[string]*pendingUpdate{},
		stop:      make(chan struct{}),
		syncWait:  map[channel.ID]syncWaiter{},
		unsynced:  map[channel.ID]bool{},
		tasks:     newTaskGroup(n.tasks.ctx, n.log),
	}
	s.tokenHash = hashToken(s.token)
	if rec != nil { // restored: the same id and token
		s.id, s.token, s.tokenHash = rec.ID, "", rec.TokenHash
	}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()
	cleanup = append(cleanup, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.tasks.stop(ctx); err != nil {
			n.log.Warn("session setup failed", "address", addr.Hex(), "err", err)
		}
		s.hub.Close()
	})
	if err := s.loadMeta(); err != nil {
		return nil, err
	}
	if s.contacts, err = contacts.Open(docStorage{docs: n.docs, key: userDocKey(addr, "contacts.yaml")}, "of "+addr.Hex()); err != nil {
		return nil, err
	}

	// Wire: the node's peer port routes the connections for this user to
	// the session's listener; the dialer finds peers in the node's hosts.
	if s.listener, err = n.port.Register(s.wireAcc); err != nil {
		return nil, fmt.Errorf("register on the peer port: %w", err)
	}
	cleanup = append(cleanup, func() { _ = s.listener.Close() })
	s.commAddr = n.commAddr
	for _, c := range s.contacts.List() {
		n.setHost(c.Address, c.CommAddress)
	}
	// Users of this node are dialled in process, the others over TCP+TLS.
	dialer := peer.NewDialer(s.wireAcc, n.hosts, n.cfg.Comm.DialTimeout).InProcess(n.port)
	s.bus = wirenet.NewBus(s.wireAcc.Map(), &loggingDialer{Dialer: dialer, log: n.log, owner: addr}, protobuf.Serializer())
	cleanup = append(cleanup, func() { s.bus.Close() })

	// Chain: the user's own account sends and receives.
	chain.ResetNonce(n.chainID, addr)
	sw := simple.NewWallet(key)
	w := gatedWallet{Wallet: sw, n: n}
	signer := types.LatestSignerForChainID(n.chainID)
	rb := recordingBackend{Backend: n.chain, unattributed: func(tx *types.Transaction) { s.attributeTx(n.adjABI, tx) },
		log: n.log, owner: addr, purposes: n.purposes, sent: newSentTxs(), metrics: n.metrics}
	cb := ethchannel.NewContractBackend(rb, ethchannel.MakeChainID(n.chainID), gatedTransactor{Transactor: simple.NewTransactor(sw, signer), n: n}, n.cfg.Chain.Confirmations)
	acc := accounts.Account{Address: addr}
	s.wallet, s.ethAcc = w, acc
	funder := ethchannel.NewFunder(cb)
	for _, a := range n.assets {
		funder.RegisterAsset(*a.asset, a.depositor(), acc)
	}
	adj := ethchannel.NewAdjudicator(cb, n.contracts.Adjudicator, addr, acc, adjudicatorGasLimit)
	s.adj = &resilientAdjudicator{Adjudicator: adj, log: n.log, turn: n.waitConcludeTurn}
	// The node's watchtower watches the channels; the client attaches.
	watcher := n.tower.ForUser(addr, s.onTowerEvent)
	bus := &observingBus{Bus: s.bus, onUpdate: s.observeIncomingUpdate, onSync: s.takeSyncReply}
	s.client, err = client.New(wireid.NewAddress(addr).Map(), bus, funder, s.adj,
		map[wallet.BackendID]wallet.Wallet{ethwallet.BackendID: w}, watcher)
	if err != nil {
		return nil, fmt.Errorf("create perun client: %w", err)
	}
	cleanup = append(cleanup, func() { s.client.Close() })

	// Persistence (the user's view of the node's store; closing it leaves
	// the store open); the channels to sync wait for their peers' answers.
	s.pr = n.store.User(addr)
	cleanup = append(cleanup, func() { s.pr.Close() })
	s.client.EnablePersistence(s.pr)
	s.client.OnNewChannel(s.onNewChannel)
	rctx, cancel := context.WithTimeout(s.tasks.ctx, 30*time.Second)
	defer cancel()
	s.toSync = s.prepareSync(rctx)

	// Only now may peers connect. Listen returns once the bus is closed.
	s.tasks.goTask("peer listener", func(context.Context) { s.bus.Listen(s.listener) })
	return s, nil
}

// start brings the session's persisted channels up to date with their
// peers, restores them and starts handling the peers' requests. If it
// fails, the caller shuts the session down.
func (s *Session) start(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s.syncPersisted(rctx)
	if err := s.client.Restore(rctx); err != nil {
		return fmt.Errorf("restore channels: %w", err)
	}
	// Handle returns once the client is closed.
	s.tasks.goTask("perun handler", func(context.Context) {
		s.client.Handle(client.ProposalHandlerFunc(s.handleProposal), client.UpdateHandlerFunc(s.handleUpdate))
	})
	s.mu.Lock()
	restored := make([]*channelEntry, 0, len(s.channels))
	for _, e := range s.channels {
		restored = append(restored, e)
	}
	s.mu.Unlock()
	for _, e := range restored {
		e.afterRestore()
	}
	s.holdPendingDisputes()
	return nil
}

// ID returns the session id.
func (s *Session) ID() string { return s.id }

// Address returns the user's address.
func (s *Session) Address() common.Address { return s.addr }

// CommAddress returns the host:port peers reach this session at: the
// node's, shared by all its users.
func (s *Session) CommAddress() string { return s.commAddr }

// Hub returns the session's event hub.
func (s *Session) Hub() *subscriptions.Hub { return s.hub }

// SetManualAccept switches the auto-accept of incoming payments off (true)
// or on (false).
func (s *Session) SetManualAccept(v bool) {
	s.mu.Lock()
	s.manual = v
	s.mu.Unlock()
}

// Info describes the session; withToken adds the token.
func (s *Session) Info(withToken bool) SessionInfo {
	s.mu.Lock()
	p := &Pending{Proposals: len(s.proposals), Updates: len(s.updates)}
	s.mu.Unlock()
	si := SessionInfo{SessionID: s.id, Address: s.addr.Hex(), CommAddress: s.commAddr, Channels: s.Channels(""), Pending: p}
	if withToken {
		si.Token = s.token
	}
	return si
}

// Balance returns the on-chain balance of an asset ("" is ETH) of addr
// (the user's by default).
func (s *Session) Balance(ctx context.Context, addr *common.Address, symbol string) (common.Address, string, error) {
	a := s.addr
	if addr != nil {
		a = *addr
	}
	b, err := s.n.AssetBalance(ctx, symbol, a)
	if err != nil {
		return a, "", err
	}
	return a, b.String(), nil
}

// AddContact adds a contact and makes it dialable.
func (s *Session) AddContact(c contacts.Contact) (contacts.Contact, error) {
	if c.Address == s.addr {
		return c, &InvalidArgError{Field: "address", Msg: "is your own address"}
	}
	if err := s.contacts.Add(c); err != nil {
		return c, err
	}
	s.n.setHost(c.Address, c.CommAddress)
	return c, nil
}

// ReplaceContact puts c in place of the contact with c's address (its
// peer address changed, say), in one write of the address book.
func (s *Session) ReplaceContact(c contacts.Contact) error {
	if err := s.contacts.Replace(c); err != nil {
		return err
	}
	s.n.setHost(c.Address, c.CommAddress)
	return nil
}

// Contacts returns the session's address book.
func (s *Session) Contacts() *contacts.Book { return s.contacts }

// peerName returns the alias of addr, or its hex form.
func (s *Session) peerName(addr common.Address) string {
	if c, err := s.contacts.ByAddress(addr); err == nil {
		return c.Alias
	}
	return addr.Hex()
}

func (s *Session) saveMeta() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.saveMetaLocked(); err != nil {
		s.n.log.Error("save session metadata", "address", s.addr.Hex(), "err", err)
	}
}

// Channels lists the session's channels, optionally only those in state.
func (s *Session) Channels(state string) []ChannelInfo {
	s.mu.Lock()
	entries := make([]*channelEntry, 0, len(s.channels))
	for _, e := range s.channels {
		entries = append(entries, e)
	}
	closed := append([]ChannelInfo(nil), s.meta.Closed...)
	s.mu.Unlock()
	out := make([]ChannelInfo, 0, len(entries)+len(closed))
	seen := map[string]bool{}
	for _, e := range entries {
		ci := e.info()
		seen[ci.ChannelID] = true
		if state == "" || ci.State == state {
			out = append(out, ci)
		}
	}
	for _, ci := range closed {
		if !seen[ci.ChannelID] && (state == "" || ci.State == state) {
			out = append(out, ci)
		}
	}
	sortChannels(out)
	return out
}

// Channel returns one channel by id.
func (s *Session) Channel(id string) (ChannelInfo, error) {
	e, err := s.entry(id)
	if err == nil {
		return e.info(), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ci := range s.meta.Closed {
		if ci.ChannelID == id {
			return ci, nil
		}
	}
	return ChannelInfo{}, err
}

func (s *Session) entry(id string) (*channelEntry, error) {
	cid, err := parseID(id)
	if err != nil {
		return nil, &InvalidArgError{Field: "channelId", Msg: err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.channels[cid]
	if !ok {
		return nil, &NotFoundError{Resource: "channel", ID: id}
	}
	return e, nil
}

func (s *Session) openChannelIDs() []string {
	var ids []string
	for _, ci := range s.Channels("") {
		if ci.State != StateClosed {
			ids = append(ids, ci.ChannelID)
		}
	}
	return ids
}

// onNewChannel is go-perun's callback for created and restored channels.
func (s *Session) onNewChannel(ch *client.Channel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.channels[ch.ID()]; ok {
		return
	}
	e := newChannelEntry(s, ch)
	e.unsynced = s.unsynced[ch.ID()]
	if m, ok := s.meta.Channels[idHex(ch.ID())]; ok {
		e.openedAt = m.OpenedAt
		e.txHashes = append(e.txHashes, m.TxHashes...)
	}
	s.channels[ch.ID()] = e
}

// shutdown stops the session; channels stay persisted. In order: pending
// proposals and updates are rejected and the handlers finish (bounded by
// ctx), the session's tasks are cancelled, the client and the bus close
// (which ends the watchers, the request handler and the listener), the
// tasks are waited for and only then the session's view of the store
// closes (the node's store stays open).
func (s *Session) shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil
	}
	s.stopping = true
	close(s.stop) // rejects pending proposals and updates
	s.mu.Unlock()

	if err := waitCtx(ctx, &s.handlers); err != nil {
		s.n.log.Warn("session shutdown: handlers still running", "address", s.addr.Hex())
	}
	s.tasks.cancelTasks()
	var errs []error
	if err := s.client.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close client: %w", err))
	}
	if err := s.bus.Close(); err != nil && classify(err) != failClosedConn {
		errs = append(errs, fmt.Errorf("close bus: %w", err))
	}
	// The bus closes the listener only if it ever listened: unregister from
	// the peer port in any case, so that the user can log in again.
	if err := s.listener.Close(); err != nil && !errors.Is(err, peer.ErrClosed) {
		errs = append(errs, fmt.Errorf("close peer listener: %w", err))
	}
	if err := s.tasks.wait(ctx); err != nil {
		errs = append(errs, fmt.Errorf("session %s: %w", s.addr.Hex(), err))
	}
	if err := s.pr.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close channel store view: %w", err))
	}
	s.hub.Close()
	s.n.log.Info("session closed", "address", s.addr.Hex())
	return errors.Join(errs...)
}

// attributeTx adds a transaction sent outside perund's own calls (a
// watcher's refutation) to its channel's list.
func (s *Session) attributeTx(a *abi.ABI, tx *types.Transaction) {
	id, ok := channelOfTx(a, tx)
	if !ok {
		return
	}
	s.mu.Lock()
	e := s.channels[id]
	s.mu.Unlock()
	if e != nil {
		e.addTxs([]string{tx.Hash().Hex()})
	}
}

// ensure interface conformance of the wire address type used for peers.
var _ wire.Address = (*wireid.Address)(nil)
