package rpc

import (
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/sourcegraph/jsonrpc2"

	"github.com/perund/perund/contacts"
	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
)

// Application error codes of the API.
const (
	CodeUnauthorized      = 1001
	CodeNotFound          = 1002
	CodeConflict          = 1003
	CodePeerUnreachable   = 1004
	CodePeerRejected      = 1005
	CodeTimeout           = 1006
	CodeInsufficientFunds = 1007
	CodeChain             = 1008
	CodeWrongState        = 1009
)

// Data of the errors: each code's data object is one of these types, so
// that classify and the OpenRPC document (its ErrorData schemas) share
// them.
type (
	// InvalidParamsData names the parameter at fault, with its full path
	// ("balance.mine"); "params" when the params as a whole are wrong.
	InvalidParamsData struct {
		Field string `json:"field"`
	}
	// UnauthorizedData says when the next password attempt is allowed.
	UnauthorizedData struct {
		RetryAfter int64 `json:"retryAfter,omitempty" doc:"seconds until the account takes another password"`
	}
	// NotFoundData names what was not found.
	NotFoundData struct {
		Resource string `json:"resource" doc:"channel, proposal, update, contact, session or account"`
		ID       string `json:"id"`
	}
	// ConflictData lists the channels that are in the way.
	ConflictData struct {
		Channels []string `json:"channels,omitempty" doc:"open channels of the session"`
	}
	// PeerData names the peer that did not answer, and where it was dialled.
	PeerData struct {
		Peer        string `json:"peer"`
		CommAddress string `json:"commAddress"`
	}
	// RejectedData is the peer's reason.
	RejectedData struct {
		Peer   string `json:"peer"`
		Reason string `json:"reason"`
	}
	// TimeoutData is the time waited, in seconds (0: the node shut down).
	TimeoutData struct {
		Timeout int64 `json:"timeout"`
	}
	// FundsData says what is there and what is needed, in base units.
	FundsData struct {
		Available string `json:"available"`
		Needed    string `json:"needed"`
	}
	// ChainData names the transaction that failed, where there was one.
	ChainData struct {
		TxHash string `json:"txHash,omitempty"`
	}
	// StateData is the channel's state that does not allow the call.
	StateData struct {
		State string `json:"state"`
	}
)

// errorCode describes one error of the API, declared once for classify's
// codes and the document.
type errorCode struct {
	code    int64
	name    string
	message string
	data    any // a value of the data's type; nil: no data
}

// errorCodes are the errors of the API.
func errorCodes() []errorCode {
	return []errorCode{
		{jsonrpc2.CodeInvalidParams, "InvalidParams", "invalid params: the parameter at data.field is missing, unknown or malformed", InvalidParamsData{}},
		{jsonrpc2.CodeInternalError, "Internal", "internal error (logged by the node)", nil},
		{CodeUnauthorized, "Unauthorized", "unauthorized: no session, a wrong password, or another user's resource", UnauthorizedData{}},
		{CodeNotFound, "NotFound", "not found", NotFoundData{}},
		{CodeConflict, "Conflict", "conflict with the current state (open channels, an existing contact)", ConflictData{}},
		{CodePeerUnreachable, "PeerUnreachable", "the peer's node cannot be reached", PeerData{}},
		{CodePeerRejected, "PeerRejected", "the peer rejected the proposal or update", RejectedData{}},
		{CodeTimeout, "TimedOut", "timed out (the peer or the chain did not answer in time, or the node shut down)", TimeoutData{}},
		{CodeInsufficientFunds, "InsufficientFunds", "insufficient funds", FundsData{}},
		{CodeChain, "Chain", "chain error: a transaction failed or the chain is unreachable", ChainData{}},
		{CodeWrongState, "WrongState", "the channel's state does not allow this", StateData{}},
	}
}

func newError(code int64, msg string, data any) *jsonrpc2.Error {
	e := &jsonrpc2.Error{Code: code, Message: msg}
	if data != nil {
		b, _ := json.Marshal(data)
		raw := json.RawMessage(b)
		e.Data = &raw
	}
	return e
}

// invalidParams is a -32602 error naming the bad field.
func invalidParams(field, msg string) *jsonrpc2.Error {
	return newError(jsonrpc2.CodeInvalidParams, "invalid params: "+msg, InvalidParamsData{field})
}

// toError maps an error of the node to a JSON-RPC error. Unknown errors
// become -32603 without internals in the message; they are logged.
func toError(err error, log *slog.Logger, method string) *jsonrpc2.Error {
	if je := classify(err); je != nil {
		return je
	}
	log.Error("internal error", "method", method, "err", err)
	return newError(jsonrpc2.CodeInternalError, "internal error", nil)
}

// classify maps the errors the API knows; it returns nil for any other.
func classify(err error) *jsonrpc2.Error {
	var (
		je  *jsonrpc2.Error
		nf  *node.NotFoundError
		cf  *node.ConflictError
		pu  *node.PeerUnreachableError
		pr  *node.PeerRejectedError
		to  *node.TimeoutError
		ins *node.InsufficientFundsError
		ce  *node.ChainError
		se  *node.StateError
		ia  *node.InvalidArgError
		ci  *contacts.InvalidError
		tm  *node.TooManyAttemptsError
	)
	switch {
	case errors.As(err, &je):
		return je
	case errors.As(err, &tm):
		return newError(CodeUnauthorized, "unauthorized: "+tm.Error(), UnauthorizedData{int64(tm.RetryAfter.Seconds() + 0.999)})
	case errors.Is(err, node.ErrUnauthorized):
		return newError(CodeUnauthorized, "unauthorized: "+trimUnauthorized(err), nil)
	case errors.As(err, &ia):
		return invalidParams(ia.Field, ia.Error())
	case errors.As(err, &ci):
		return invalidParams(ci.Field, ci.Error())
	case errors.As(err, &nf):
		return newError(CodeNotFound, nf.Error(), NotFoundData{nf.Resource, nf.ID})
	case errors.Is(err, contacts.ErrNotFound):
		return newError(CodeNotFound, "contact not found", NotFoundData{Resource: "contact"})
	case errors.As(err, &cf):
		return newError(CodeConflict, cf.Error(), ConflictData{cf.Channels})
	case errors.Is(err, contacts.ErrConflict):
		return newError(CodeConflict, "alias or address exists with other data", ConflictData{})
	case errors.As(err, &pu):
		return newError(CodePeerUnreachable, pu.Error(), PeerData{pu.Peer, pu.CommAddress})
	case errors.As(err, &pr):
		return newError(CodePeerRejected, pr.Error(), RejectedData{pr.Peer, pr.Reason})
	case errors.As(err, &to):
		return newError(CodeTimeout, to.Error(), TimeoutData{int64(to.Timeout.Seconds())})
	case errors.As(err, &ins):
		return newError(CodeInsufficientFunds, ins.Error(), FundsData{ins.Available, ins.Needed})
	case errors.As(err, &ce):
		return newError(CodeChain, "chain error", ChainData{ce.TxHash})
	case errors.As(err, &se):
		return newError(CodeWrongState, se.Error(), StateData{se.State})
	case errors.Is(err, subscriptions.ErrUnknownTopic):
		return invalidParams("topic", err.Error())
	}
	return nil
}

func trimUnauthorized(err error) string {
	switch {
	case errors.Is(err, errNoSession):
		return "no session bound to this connection: call session_open or session_resume"
	default:
		return err.Error()
	}
}

var errNoSession = errors.New("no session")
