package node

import (
	"errors"
	"fmt"
	"time"
)

// ErrUnauthorized is returned for a wrong password or a forbidden action.
var ErrUnauthorized = errors.New("unauthorized")

// NotFoundError names a missing resource.
type NotFoundError struct {
	Resource string
	ID       string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %s not found", e.Resource, e.ID) }

// ConflictError is a conflict: an existing alias, open channels, a busy channel.
type ConflictError struct {
	Msg      string
	Channels []string
}

func (e *ConflictError) Error() string { return e.Msg }

// PeerUnreachableError is returned when a peer cannot be reached.
type PeerUnreachableError struct {
	Peer        string
	CommAddress string
	Err         error
}

func (e *PeerUnreachableError) Error() string {
	return fmt.Sprintf("peer %s at %s unreachable: %v", e.Peer, e.CommAddress, e.Err)
}

func (e *PeerUnreachableError) Unwrap() error { return e.Err }

// PeerRejectedError is returned when the peer rejected a proposal or update.
type PeerRejectedError struct {
	Peer   string
	Reason string
}

func (e *PeerRejectedError) Error() string {
	return fmt.Sprintf("peer %s rejected: %s", e.Peer, e.Reason)
}

// TimeoutError is returned when a wait ran out.
type TimeoutError struct {
	What    string
	Timeout time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s timed out after %s", e.What, e.Timeout)
}

// InsufficientFundsError reports the available and needed amounts in base units.
type InsufficientFundsError struct {
	Where     string
	Available string
	Needed    string
}

func (e *InsufficientFundsError) Error() string {
	return fmt.Sprintf("insufficient funds %s: available %s, needed %s", e.Where, e.Available, e.Needed)
}

// ChainError is a failed or unsent transaction or an unreachable chain.
type ChainError struct {
	TxHash string
	Err    error
}

func (e *ChainError) Error() string {
	if e.TxHash != "" {
		return fmt.Sprintf("chain error (tx %s): %v", e.TxHash, e.Err)
	}
	return fmt.Sprintf("chain error: %v", e.Err)
}

func (e *ChainError) Unwrap() error { return e.Err }

// StateError is returned when a call does not fit the channel's state.
type StateError struct {
	State string
	Msg   string
}

func (e *StateError) Error() string { return fmt.Sprintf("%s (channel state %s)", e.Msg, e.State) }

// InvalidArgError names a bad argument of a call.
type InvalidArgError struct {
	Field string
	Msg   string
}

func (e *InvalidArgError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Msg) }
