// Package node holds perund's Node (chain connection, contracts, keystore,
// session registry, the one peer port and host table of package peer) and
// its Sessions (one user's go-perun client, wallet, wire bus registered on
// the node's peer port, LevelDB persister, watcher, channels and pending
// proposals and updates). It knows nothing of JSON-RPC or WebSockets.
package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/perun-network/perun-eth-backend/bindings/adjudicator"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/config"
	"github.com/perund/perund/keys"
	"github.com/perund/perund/metrics"
	"github.com/perund/perund/peer"
	"github.com/perund/perund/store"
	"github.com/perund/perund/watchtower"
	"github.com/perund/perund/wireid"
)

// AssetETH is the symbol of the chain's native asset.
const AssetETH = "ETH"

// Options configure a Node.
type Options struct {
	Config    *config.Config
	Chain     chain.Backend
	Contracts chain.Contracts
	// Assets are the ERC20 assets besides ETH, with validated holders.
	Assets []chain.Asset
	// Fund, if set, gives a newly created account its starting funds (dev).
	Fund    func(ctx context.Context, addr common.Address) error
	Logger  *slog.Logger
	Version string
	// Demo lists the demo accounts of perund dev, shown by node_info so the
	// web wallet can offer them.
	Demo []DemoAccount
	// Starting makes the node report HealthStarting until SetReady is
	// called, e.g. while perund dev brings its demo sessions back.
	Starting bool
	// KDF, if set, overrides the keystore's key derivation strength
	// (keystore.lightKdf): the load program's thousands of users use
	// keys.BenchKDF, which protects nothing.
	KDF *keys.KDF
	// Watcher is the key of the operator account that sends the
	// watchtower's refutations (watcher.account); nil for none.
	Watcher *ecdsa.PrivateKey
	// Metrics, if set, receive the node's counters and a collector of its
	// sessions and channels.
	Metrics *metrics.Metrics
	// Gate, if set, must allow every signature the node makes (a cluster
	// node: the lease's Check).
	Gate Gate
	// Epoch, if not zero, is the cluster lease's epoch this node holds:
	// every write to the PostgreSQL store checks it (store.ErrFenced once
	// another process took over).
	Epoch int64
}

// Node is a multi-user perund node.
type Node struct {
	cfg       *config.Config
	chain     chain.Backend
	chainID   *big.Int
	contracts chain.Contracts
	assets    []*assetEntry
	keys      *keys.Store
	fund      func(ctx context.Context, addr common.Address) error
	log       *slog.Logger
	version   string
	demo      []DemoAccount
	// store holds every user's channels; it closes last (Close).
	store store.Store
	// docs hold the users' session metadata, contacts and session
	// records: files in the data dir, or the PostgreSQL store's table.
	docs store.Docs
	// gate, if set, must allow every signature (gate.go).
	gate Gate

	// port is the node's one peer port: every session registers on it.
	port *peer.Port
	// hosts is where the sessions' dialers find peers (node-wide: of two
	// users who store different commAddresses for one peer, the last wins).
	hosts *peer.Hosts
	// commAddr is the host:port peers reach every user of the node at.
	commAddr string
	// selfAddr is where the node dials its own peer port (loopback if it
	// listens on every interface).
	selfAddr string

	// tower watches every stored channel of every user, logged in or not;
	// operator and opAdj send its refutations (zero and nil without
	// watcher.account).
	tower    *watchtower.Tower
	operator common.Address
	opAdj    *ethchannel.Adjudicator
	// adjABI and purposes decode the transactions sessions send (txrec.go),
	// parsed once for all sessions.
	adjABI   *abi.ABI
	purposes *txPurposes
	// adjCaller reads the adjudicator's disputes (reconcile.go).
	adjCaller *adjudicator.AdjudicatorCaller

	// metrics record what the node does (nil: nothing).
	metrics *metrics.Metrics

	// tasks owns the node's goroutines; each session's tasks are a child
	// group, so anything left of a session ends with the node.
	tasks *taskGroup

	mu        sync.Mutex
	sessions  map[common.Address]*Session
	byID      map[string]*Session
	opening   map[common.Address]*opening
	passwords *passwordGuard
	starting  bool
	closed    bool
}

// opening is a session being opened.
type opening struct {
	reachable chan struct{} // closed once its bus listens (or its setup failed)
	done      chan struct{} // closed once it is open or failed
}

// New creates a node on an already connected chain with validated contracts.
func New(ctx context.Context, o Options) (*Node, error) {
	if o.Config == nil || o.Chain == nil {
		return nil, errors.New("new node: config and chain are required")
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	id, err := o.Chain.ChainID(ctx)
	if err != nil {
		return nil, &ChainError{Err: fmt.Errorf("read chain id: %w", err)}
	}
	kdf := keys.StandardKDF
	if o.Config.Keystore.LightKDF {
		kdf = keys.LightKDF
	}
	if o.KDF != nil {
		kdf = *o.KDF
	}
	ks, err := keys.New(o.Config.KeystoreDir(), kdf)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Config.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	st, docs, err := openStore(ctx, o.Config, lg, o.Epoch)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = st.Close()
		}
	}()
	dep := chain.Deployment{ChainID: id.Uint64(), Contracts: o.Contracts, Assets: o.Assets}
	if err := bindDataDir(ctx, o.Config.DataDir, dep, st); err != nil {
		return nil, err
	}
	port, commAddr, err := openPeerPort(o.Config, lg)
	if err != nil {
		return nil, err
	}
	lg.Info("peer port listening", "listen", port.Addr().String(), "commAddress", commAddr, "legacyPeers", len(o.Config.Comm.LegacyPeers))
	n := &Node{
		store:     st,
		docs:      docs,
		gate:      o.Gate,
		cfg:       o.Config,
		chain:     o.Chain,
		chainID:   id,
		contracts: o.Contracts,
		assets:    newAssets(id, o.Contracts, o.Assets),
		keys:      ks,
		fund:      o.Fund,
		log:       lg,
		version:   o.Version,
		demo:      o.Demo,
		port:      port,
		adjABI:    parseAdjudicatorABI(),
		purposes:  newTxPurposes(),
		hosts:     peer.NewHosts(),
		commAddr:  commAddr,
		selfAddr:  selfDialAddr(port.Addr()),
		sessions:  map[common.Address]*Session{},
		byID:      map[string]*Session{},
		opening:   map[common.Address]*opening{},
		passwords: newPasswordGuard(),
		tasks:     newTaskGroup(context.Background(), lg),
		starting:  o.Starting,
		metrics:   o.Metrics,
	}
	if err := n.pullKeys(ctx); err != nil {
		port.Close()
		return nil, err
	}
	if err := o.Metrics.Register(newNodeCollector(n)); err != nil {
		port.Close()
		return nil, fmt.Errorf("register the node's metrics: %w", err)
	}
	if err := n.startTower(ctx, o.Watcher); err != nil {
		port.Close()
		if n.tower != nil {
			_ = n.tower.Close(ctx)
		}
		return nil, err
	}
	ok = true
	return n, nil
}

// openPeerPort opens the node's peer port on comm.listen with the data
// dir's certificate; it returns the port and the commAddress it advertises
// (comm.host and the port's actual port).
func openPeerPort(cfg *config.Config, lg *slog.Logger) (*peer.Port, string, error) {
	cert, err := peer.LoadOrCreateCertificate(cfg.DataDir)
	if err != nil {
		return nil, "", err
	}
	port, err := peer.Listen(peer.Config{
		Addr: cfg.Comm.Listen, Certificate: cert,
		LegacyPeers: cfg.Comm.LegacyPeerAddresses(), Log: lg,
	})
	if err != nil {
		return nil, "", fmt.Errorf("config key comm.listen: %w", err)
	}
	_, p, err := net.SplitHostPort(port.Addr().String())
	if err != nil {
		port.Close()
		return nil, "", fmt.Errorf("peer port address: %w", err)
	}
	return port, net.JoinHostPort(cfg.Comm.Host, p), nil
}

// selfDialAddr is where the node reaches its own peer port listening on a.
func selfDialAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	switch {
	case ip.IsUnspecified() && ip.To4() == nil:
		ip = net.IPv6loopback
	case ip.IsUnspecified():
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port))
}

// setHost records where the sessions' dialers reach peer: at commAddr, or,
// for a user of this node (their key is in its keystore), at the node's own
// peer port whatever commAddr says, so that users of one node reach each
// other even if a contact names an old or outside address of the node. The
// table is node-wide: of two users who store different commAddresses for one
// peer, the last set wins.
func (n *Node) setHost(p common.Address, commAddr string) {
	if n.keys.Has(p) {
		n.hosts.Set(p, n.selfAddr)
		return
	}
	n.hosts.Set(p, commAddr)
}

// CommAddress returns the host:port peers reach every user of the node at:
// comm.host and the peer port's actual port.
func (n *Node) CommAddress() string { return n.commAddr }

// PeerListenAddr returns the address the node's peer port listens on.
func (n *Node) PeerListenAddr() net.Addr { return n.port.Addr() }

// Config returns the node's configuration.
func (n *Node) Config() *config.Config { return n.cfg }

// Keys returns the node's keystore.
func (n *Node) Keys() *keys.Store { return n.keys }

// Info describes the node.
func (n *Node) Info() NodeInfo {
	n.mu.Lock()
	count := len(n.sessions)
	n.mu.Unlock()
	holders := map[string]string{}
	for _, a := range n.assets {
		holders[a.symbol] = a.holder.Hex()
	}
	return NodeInfo{
		Version:           n.version,
		ChainID:           n.chainID.String(),
		Adjudicator:       n.contracts.Adjudicator.Hex(),
		AssetHolders:      holders,
		Assets:            n.Assets(),
		ChallengeDuration: n.cfg.Channel.ChallengeDuration,
		ResponseTimeout:   int64(n.cfg.Channel.ResponseTimeout / time.Second),
		Sessions:          count,
		AccountCreation:   n.cfg.AllowAccountCreation,
		DemoAccounts:      n.demo,
	}
}

// Healthy checks that the chain answers.
func (n *Node) Healthy(ctx context.Context) error {
	if _, err := n.chain.HeaderByNumber(ctx, nil); err != nil {
		return &ChainError{Err: fmt.Errorf("read head: %w", err)}
	}
	return nil
}

// Health states of a node (Health.Status).
const (
	HealthStarting         = "starting"         // sessions are still coming back
	HealthReady            = "ready"            // serving, the chain answers
	HealthStopping         = "stopping"         // Close has begun
	HealthChainUnreachable = "chainUnreachable" // the chain does not answer
)

// Health is the node's state as a health check reports it.
type Health struct {
	Status string
	// Err is why the chain is unreachable.
	Err error
}

// Ready tells whether the node serves normally.
func (h Health) Ready() bool { return h.Status == HealthReady }

// Health reports whether the node is starting, ready or stopping, and
// whether the chain answers.
func (n *Node) Health(ctx context.Context) Health {
	n.mu.Lock()
	starting, closed := n.starting, n.closed
	n.mu.Unlock()
	switch {
	case closed:
		return Health{Status: HealthStopping}
	case starting:
		return Health{Status: HealthStarting}
	}
	if err := n.Healthy(ctx); err != nil {
		return Health{Status: HealthChainUnreachable, Err: err}
	}
	return Health{Status: HealthReady}
}

// SetReady ends the starting state of a node created with Options.Starting.
func (n *Node) SetReady() {
	n.mu.Lock()
	n.starting = false
	n.mu.Unlock()
}

// NewAccount creates a keystore account (only when the node allows it).
func (n *Node) NewAccount(ctx context.Context, password string) (common.Address, error) {
	if !n.cfg.AllowAccountCreation {
		return common.Address{}, fmt.Errorf("account creation is disabled on this node: %w", ErrUnauthorized)
	}
	if password == "" {
		return common.Address{}, &InvalidArgError{Field: "password", Msg: "must not be empty"}
	}
	addr, err := n.keys.Create(password)
	if err != nil {
		return common.Address{}, fmt.Errorf("create account: %w", err)
	}
	if n.fund != nil {
		if err := n.fund(ctx, addr); err != nil {
			return addr, &ChainError{Err: fmt.Errorf("fund new account %s: %w", addr.Hex(), err)}
		}
	}
	if err := n.pushKey(ctx, addr); err != nil {
		n.log.Warn("a standby cannot unlock the new account's key without it", "address", addr.Hex(), "err", err)
	}
	n.log.Info("account created", "address", addr.Hex())
	return addr, nil
}

// Accounts lists the keystore's accounts.
func (n *Node) Accounts() ([]common.Address, error) { return n.keys.List() }

// Balance returns the on-chain ETH balance of addr.
func (n *Node) Balance(ctx context.Context, addr common.Address) (*big.Int, error) {
	b, err := n.chain.BalanceAt(ctx, addr, nil)
	if err != nil {
		return nil, &ChainError{Err: fmt.Errorf("read balance of %s: %w", addr.Hex(), err)}
	}
	return b, nil
}

// OpenSession unlocks account with password and starts its session, or
// attaches to the running one (same session id). manualAccept applies to a
// new session; SetManualAccept changes it later.
func (n *Node) OpenSession(ctx context.Context, account common.Address, password string, manualAccept bool) (*Session, error) {
	list, err := n.OpenSessions(ctx, []Login{{Account: account, Password: password, ManualAccept: manualAccept}})
	if err != nil {
		return nil, err
	}
	return list[0], nil
}

// Login names an account to open a session of (OpenSessions).
type Login struct {
	Account  common.Address
	Password string
	// ManualAccept applies to a new session (see OpenSession).
	ManualAccept bool
	// record, if set, brings back a recorded session with its id and
	// token (RestoreSessions).
	record *sessionRecord
}

// OpenSessions opens the sessions of several accounts together, as after a
// restart, and returns them in the order of logins (sessions already open
// are attached to, as by OpenSession). Every new session's bus listens
// before any of them syncs its channels with its peers, so users of this
// node who share a channel sync with each other at once instead of dialling
// a peer that is not up yet. The first error is returned; sessions that did
// open stay open.
func (n *Node) OpenSessions(ctx context.Context, logins []Login) ([]*Session, error) {
	privs := make([]*ecdsa.PrivateKey, len(logins))
	for i, l := range logins {
		if l.Account == n.operator && n.operator != (common.Address{}) {
			return nil, &InvalidArgError{Field: "account", Msg: "is the node's watchtower account (watcher.account), not a user's"}
		}
		if !n.keys.Has(l.Account) {
			// Another node of the cluster may have shared it.
			if err := n.pullKeys(ctx); err != nil {
				n.log.Warn("look for the account's key in the store", "err", err)
			}
		}
		if !n.keys.Has(l.Account) {
			return nil, &NotFoundError{Resource: "account", ID: l.Account.Hex()}
		}
		k, err := n.unlock(l.Account, l.Password)
		if err != nil {
			return nil, fmt.Errorf("open session of %s: %w", l.Account.Hex(), err)
		}
		privs[i] = k
	}
	out := make([]*Session, len(logins))
	for {
		// Take what is open, claim what nobody opens, wait for the rest.
		var claimed []int
		var waits []chan struct{}
		var attached []*Session
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			return nil, errors.New("node is shutting down")
		}
		for i, l := range logins {
			if out[i] != nil {
				continue
			}
			if s, ok := n.sessions[l.Account]; ok {
				out[i] = s
				if l.record == nil {
					attached = append(attached, s)
				}
				continue
			}
			if op, busy := n.opening[l.Account]; busy {
				waits = append(waits, op.done)
				continue
			}
			n.opening[l.Account] = &opening{reachable: make(chan struct{}), done: make(chan struct{})}
			claimed = append(claimed, i)
		}
		n.mu.Unlock()
		for _, s := range attached {
			n.issueToken(s)
		}
		if len(claimed) == 0 && len(waits) == 0 {
			return out, nil
		}
		if err := n.openClaimed(ctx, logins, privs, claimed); err != nil {
			return nil, err
		}
		for _, w := range waits {
			select {
			case <-w:
			case <-ctx.Done():
				return nil, &TimeoutError{What: "waiting for the session to open", Timeout: 0}
			}
		}
	}
}

// unlock checks the password of account (rate-limited) and returns its key.
func (n *Node) unlock(account common.Address, password string) (*ecdsa.PrivateKey, error) {
	var key *ecdsa.PrivateKey
	err := n.passwords.check(account, func() (bool, error) {
		var err error
		key, err = n.keys.Unlock(account, password)
		if errors.Is(err, keys.ErrWrongPassword) {
			return true, fmt.Errorf("wrong password: %w", ErrUnauthorized)
		}
		return false, err
	})
	return key, err
}

// openClaimed opens the sessions of the claimed logins in two phases: all
// buses listen first, then all sessions sync, restore and start handling.
func (n *Node) openClaimed(ctx context.Context, logins []Login, privs []*ecdsa.PrivateKey, claimed []int) error {
	started := make([]*Session, len(logins))
	errs := make([]error, len(logins))
	for _, i := range claimed {
		started[i], errs[i] = newSession(n, privs[i], logins[i].ManualAccept, logins[i].record)
		n.mu.Lock()
		close(n.opening[logins[i].Account].reachable)
		n.mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, i := range claimed {
		if errs[i] != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = started[i].start(ctx); errs[i] != nil {
				n.abandon(started[i])
			}
		}()
	}
	wg.Wait()
	var first error
	for _, i := range claimed {
		account, s := logins[i].Account, started[i]
		err := errs[i]
		n.mu.Lock()
		if err == nil && n.closed {
			n.mu.Unlock()
			n.abandon(s)
			err = errors.New("node is shutting down")
			n.mu.Lock()
		}
		op := n.opening[account]
		delete(n.opening, account)
		close(op.done)
		if err == nil {
			n.sessions[account] = s
			n.byID[s.id] = s
		}
		n.mu.Unlock()
		if err == nil {
			n.saveRecord(s)
			if kerr := n.pushKey(ctx, account); kerr != nil {
				n.log.Warn("a standby cannot unlock this user's key without it", "address", account.Hex(), "err", kerr)
			}
		}
		if err != nil {
			if first == nil {
				first = fmt.Errorf("open session of %s: %w", account.Hex(), err)
			}
			continue
		}
		n.log.Info("session opened", "address", account.Hex(), "commAddress", s.CommAddress(), "channels", len(s.Channels("")))
	}
	return first
}

// abandon shuts down a session that did not open.
func (n *Node) abandon(s *Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.shutdown(ctx); err != nil {
		n.log.Warn("shut down a session that did not open", "address", s.addr.Hex(), "err", err)
	}
}

// syncPlan is how a session syncs a channel with its peer (planSync).
type syncPlan struct {
	// skip leaves the sync to the peer, for the reason why.
	skip bool
	why  string
	// peerFirst is closed once the peer's session is open (or failed to
	// open) when the peer is a user of this node that syncs with this
	// session at the same time and sends first; nil otherwise.
	peerFirst <-chan struct{}
}

// planSync decides how a session of self syncs with peer. A peer that is
// a user of this node without an open session is left to sync when it
// opens. A peer's session that is being opened is waited for until its bus
// listens; both then sync at once, and the one with the lower address
// sends first, so that the other answers on the connection it dialled: two
// sessions dialling each other at the same moment make go-perun drop one
// of the connections and retry a send 3 s later.
func (n *Node) planSync(ctx context.Context, self common.Address, peer map[wallet.BackendID]wire.Address) syncPlan {
	w, ok := peer[wireid.BackendID].(*wireid.Address)
	if !ok {
		return syncPlan{}
	}
	addr := w.Eth()
	if !n.keys.Has(addr) {
		return syncPlan{} // a user of another node
	}
	if !n.knownUser(ctx, addr) {
		return syncPlan{} // never had a session here: maybe on another node
	}
	n.mu.Lock()
	_, open := n.sessions[addr]
	op, busy := n.opening[addr]
	n.mu.Unlock()
	switch {
	case open:
		return syncPlan{}
	case busy:
		select {
		case <-op.reachable:
		case <-ctx.Done():
		}
		if bytes.Compare(addr.Bytes(), self.Bytes()) < 0 {
			return syncPlan{peerFirst: op.done}
		}
		return syncPlan{}
	}
	return syncPlan{skip: true, why: "the peer is a user of this node without an open session; it syncs when it opens"}
}

// ResumeSession finds a running session by id and checks its token
// against the token's hash in constant time. A session that was open
// before a restart or a failover and did not come back (RestoreSessions)
// is refused with the advice to log in again.
func (n *Node) ResumeSession(id, token string) (*Session, error) {
	n.mu.Lock()
	s, ok := n.byID[id]
	n.mu.Unlock()
	if !ok {
		return nil, n.resumeError(id, token)
	}
	s.mu.Lock()
	hash := s.tokenHash
	s.mu.Unlock()
	if !tokenMatches(token, hash) {
		return nil, fmt.Errorf("resume session: unknown session or wrong token: %w", ErrUnauthorized)
	}
	return s, nil
}

// issueToken gives a session restored from its record (whose token the
// node only knows hashed) a new token when its user logs in again, so
// that session_open can return one.
func (n *Node) issueToken(s *Session) {
	s.mu.Lock()
	if s.token != "" {
		s.mu.Unlock()
		return
	}
	s.token = randomHex(32)
	s.tokenHash = hashToken(s.token)
	s.mu.Unlock()
	n.saveRecord(s)
}

// CloseSession stops a session and forgets its record. Without force it
// refuses while channels are open; with force, open channels stay
// persisted for the next OpenSession.
func (n *Node) CloseSession(ctx context.Context, s *Session, force bool) error {
	return n.closeSession(ctx, s, force, true)
}

// closeSession stops a session; forget removes its record (a session
// stopped by the node's Close keeps it, to come back after a restart).
func (n *Node) closeSession(ctx context.Context, s *Session, force, forget bool) error {
	if !force {
		if open := s.openChannelIDs(); len(open) > 0 {
			return &ConflictError{Msg: "session has open channels", Channels: open}
		}
	}
	n.mu.Lock()
	if n.sessions[s.addr] != s {
		n.mu.Unlock()
		return nil
	}
	delete(n.sessions, s.addr)
	delete(n.byID, s.id)
	n.mu.Unlock()
	if forget {
		n.forgetRecord(s.addr)
	}
	return s.shutdown(ctx)
}

// Close stops every session (channels stay persisted) and the node. It
// waits for sessions being opened, then closes the sessions, whose
// background tasks are cancelled and waited for, the node's own tasks and,
// last, the channel store.
func (n *Node) Close(ctx context.Context) error {
	n.mu.Lock()
	n.closed = true
	var waits []chan struct{}
	for _, op := range n.opening {
		waits = append(waits, op.done)
	}
	n.mu.Unlock()
	var errs []error
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("close node: a session is still opening: %w", ctx.Err()))
		}
	}
	n.mu.Lock()
	list := make([]*Session, 0, len(n.sessions))
	for _, s := range n.sessions {
		list = append(list, s)
	}
	n.mu.Unlock()
	for _, s := range list {
		if err := n.closeSession(ctx, s, true, false); err != nil {
			errs = append(errs, err)
		}
	}
	// The port closes after every session: their buses close their own
	// connections and listeners, the port only what it has not handed on.
	if err := n.port.Close(); err != nil && !errors.Is(err, peer.ErrClosed) {
		errs = append(errs, fmt.Errorf("close node: %w", err))
	}
	if err := n.tasks.stop(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close node: %w", err))
	}
	if err := n.tower.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close node: %w", err))
	}
	if err := n.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close node: %w", err))
	}
	return errors.Join(errs...)
}

func (n *Node) sessionDir(addr common.Address) string {
	return filepath.Join(n.cfg.DataDir, strings.ToLower(addr.Hex()))
}

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return "0x" + hex.EncodeToString(b)
}

func sortChannels(list []ChannelInfo) {
	sort.Slice(list, func(i, j int) bool {
		if !list[i].OpenedAt.Equal(list[j].OpenedAt) {
			return list[i].OpenedAt.Before(list[j].OpenedAt)
		}
		return list[i].ChannelID < list[j].ChannelID
	})
}
