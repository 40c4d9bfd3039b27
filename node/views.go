package node

import (
	"math/big"
	"time"
)

// Channel states as the API shows them.
const (
	StateOpening    = "opening"
	StateOpen       = "open"
	StateClosing    = "closing"
	StateRegistered = "registered"
	StateClosed     = "closed"
)

// Balance is a pair of amounts from the viewer's side, in base units.
type Balance struct {
	Mine   string `json:"mine" api:"amount"`
	Theirs string `json:"theirs" api:"amount"`
}

// ChannelInfo describes a channel from one session's side.
type ChannelInfo struct {
	ChannelID         string     `json:"channelId" api:"hash"`
	Peer              string     `json:"peer" doc:"alias of the contact, or its address"`
	Asset             string     `json:"asset"`
	Balance           Balance    `json:"balance"`
	Version           uint64     `json:"version" doc:"version of the state; each update increments it"`
	State             string     `json:"state" api:"channelState"`
	ChallengeDuration uint64     `json:"challengeDuration" doc:"seconds a registered state can be refuted"`
	OpenedAt          time.Time  `json:"openedAt"`
	ClosedAt          *time.Time `json:"closedAt,omitempty"`
	// ClosedBy says how a closed channel was settled: "agreement" or "dispute".
	ClosedBy string   `json:"closedBy,omitempty" api:"enum:agreement,dispute"`
	TxHashes []string `json:"txHashes" api:"hash" doc:"transactions of the channel (deposits, registration, conclusion, withdrawal)"`
	// Unsynced: the peer could not be reached at login to compare the
	// channel's latest state; the channel is as this node stored it until
	// its next update with the peer.
	Unsynced bool `json:"unsynced,omitempty"`
	// Outcome is set on a channel closed by a dispute that concluded an
	// older state than the latest one both parties signed: Version and
	// Balance are then the concluded state's, Outcome the latest one's.
	*Outcome
}

// Outcome compares what the chain concluded with the latest off-chain
// state, on a channel whose dispute concluded an older state.
type Outcome struct {
	// LatestVersion and LatestBalance are the latest state signed by both.
	LatestVersion uint64  `json:"latestVersion"`
	LatestBalance Balance `json:"latestBalance"`
	// Difference is the user's concluded share minus their latest share
	// (negative: the user lost that much to the older state).
	Difference string `json:"difference" api:"signedAmount" doc:"the user's concluded share minus their latest share; negative: lost to the older state"`
}

// ProposalInfo describes an incoming channel proposal.
type ProposalInfo struct {
	ProposalID        string    `json:"proposalId" api:"hash"`
	Peer              string    `json:"peer" doc:"alias of the contact, or its address"`
	Asset             string    `json:"asset"`
	Balance           Balance   `json:"balance"`
	ChallengeDuration uint64    `json:"challengeDuration" doc:"seconds a registered state can be refuted"`
	ExpiresAt         time.Time `json:"expiresAt" doc:"when it is answered for the user if they do not answer (rejected)"`
	Status            string    `json:"status,omitempty" api:"enum:pending,accepted,rejected,expired"`
	// Fundable tells whether the user's on-chain balance of the asset
	// covers their share when the proposal arrived; Shortfall is what is
	// missing (base units of the asset) when it does not.
	Fundable  bool   `json:"fundable"`
	Shortfall string `json:"shortfall,omitempty" api:"amount"`
}

// Update kinds.
const (
	KindPayment = "payment"
	KindRequest = "request"
	KindClose   = "close"
)

// Update and proposal statuses on the subscription topics.
const (
	StatusPending  = "pending"
	StatusAccepted = "accepted"
	StatusRejected = "rejected"
	StatusExpired  = "expired"
)

// UpdateInfo describes an incoming channel update.
type UpdateInfo struct {
	UpdateID  string    `json:"updateId" api:"hash"`
	ChannelID string    `json:"channelId" api:"hash"`
	Peer      string    `json:"peer" doc:"alias of the contact, or its address"`
	Kind      string    `json:"kind" api:"enum:payment,request,close"`
	Amount    string    `json:"amount" api:"amount"`
	Version   uint64    `json:"version" doc:"version of the state; each update increments it"`
	Balance   Balance   `json:"balance"`
	ExpiresAt time.Time `json:"expiresAt" doc:"when it is answered for the user if they do not answer (rejected)"`
	Status    string    `json:"status,omitempty" api:"enum:pending,accepted,rejected,expired"`
}

// DisputeEvent is an on-chain event of a channel.
type DisputeEvent struct {
	ChannelID string    `json:"channelId" api:"hash"`
	Event     string    `json:"event" api:"enum:registered,progressed,concluded,withdrawn"`
	Version   uint64    `json:"version" doc:"version of the state; each update increments it"`
	Timeout   time.Time `json:"timeout" doc:"end of the challenge period: the registered state can be concluded from then on"`
	ByPeer    bool      `json:"byPeer"`
	Response  string    `json:"response"`
	// TxHash is the transaction of the event; empty when the node found
	// the dispute by reading the adjudicator (at start, after a gap).
	TxHash string `json:"txHash,omitempty" api:"hash"`
	// Sender is the account that sent TxHash.
	Sender string `json:"sender,omitempty" api:"address"`
	// ByWatcher: the node's watchtower account sent it (a refutation).
	ByWatcher bool `json:"byWatcher,omitempty"`
	// Refutation is where the node's refutation of a stale registration
	// stands: RefutationSending, RefutationMined or RefutationFailed;
	// empty when there is nothing to refute.
	Refutation string `json:"refutation,omitempty" api:"enum:sending,mined,failed"`
	// Amount is what a "withdrawn" event withdrew for the user.
	Amount string `json:"amount,omitempty" api:"amount"`
	// Balance is each side's share of the concluded state ("withdrawn").
	Balance *Balance `json:"balance,omitempty"`
}

// DisputeWithdrawn is the event of the user's share withdrawn after a
// dispute; the other events are named after the adjudicator's phases
// ("registered", "progressed", "concluded").
const DisputeWithdrawn = "withdrawn"

// The states of a refutation (DisputeEvent.Refutation).
const (
	RefutationSending = "sending" // the stale registration is seen, the latest state is being registered
	RefutationMined   = "mined"   // the latest state is registered on chain
	RefutationFailed  = "failed"  // the registration failed (Response says why); retried while possible
)

// SessionInfo is the result of opening or resuming a session.
type SessionInfo struct {
	SessionID   string        `json:"sessionId"`
	Token       string        `json:"token,omitempty"`
	Address     string        `json:"address" api:"address"`
	CommAddress string        `json:"commAddress"`
	Channels    []ChannelInfo `json:"channels"`
	Pending     *Pending      `json:"pending,omitempty"`
}

// Pending counts what waits for the user's answer.
type Pending struct {
	Proposals int `json:"proposals"`
	Updates   int `json:"updates"`
}

// NodeInfo describes the node.
type NodeInfo struct {
	Version           string            `json:"version" doc:"the perund release this node runs (perund version also prints its commit and library versions)"`
	ChainID           string            `json:"chainId"`
	Adjudicator       string            `json:"adjudicator" api:"address"`
	AssetHolders      map[string]string `json:"assetHolders"`
	Assets            []AssetInfo       `json:"assets"`
	ChallengeDuration uint64            `json:"challengeDuration" doc:"seconds a registered state can be refuted"`
	ResponseTimeout   int64             `json:"responseTimeout" doc:"seconds a proposal or update waits for the user's answer"`
	Sessions          int               `json:"sessions"`
	// AccountCreation tells whether account_new is allowed (dev mode).
	AccountCreation bool `json:"accountCreation"`
	// DemoAccounts are perund dev's demo users (their passwords are public).
	DemoAccounts []DemoAccount `json:"demoAccounts,omitempty"`
}

// DemoAccount is a demo user of perund dev.
type DemoAccount struct {
	Name     string `json:"name"`
	Address  string `json:"address" api:"address"`
	Password string `json:"password"`
}

func amount(v *big.Int) string {
	if v == nil {
		return "0"
	}
	return v.String()
}
