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
	return newError(jsonrpc2.CodeInvalidParams, "invalid params: "+msg, map[string]string{"field": field})
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
		return newError(CodeUnauthorized, "unauthorized: "+tm.Error(), map[string]int64{"retryAfter": int64(tm.RetryAfter.Seconds() + 0.999)})
	case errors.Is(err, node.ErrUnauthorized):
		return newError(CodeUnauthorized, "unauthorized: "+trimUnauthorized(err), nil)
	case errors.As(err, &ia):
		return invalidParams(ia.Field, ia.Error())
	case errors.As(err, &ci):
		return invalidParams(ci.Field, ci.Error())
	case errors.As(err, &nf):
		return newError(CodeNotFound, nf.Error(), map[string]string{"resource": nf.Resource, "id": nf.ID})
	case errors.Is(err, contacts.ErrNotFound):
		return newError(CodeNotFound, "contact not found", map[string]string{"resource": "contact", "id": ""})
	case errors.As(err, &cf):
		return newError(CodeConflict, cf.Error(), map[string]any{"channels": nonNil(cf.Channels)})
	case errors.Is(err, contacts.ErrConflict):
		return newError(CodeConflict, "alias or address exists with other data", map[string]any{})
	case errors.As(err, &pu):
		return newError(CodePeerUnreachable, pu.Error(), map[string]string{"peer": pu.Peer, "commAddress": pu.CommAddress})
	case errors.As(err, &pr):
		return newError(CodePeerRejected, pr.Error(), map[string]string{"peer": pr.Peer, "reason": pr.Reason})
	case errors.As(err, &to):
		return newError(CodeTimeout, to.Error(), map[string]int64{"timeout": int64(to.Timeout.Seconds())})
	case errors.As(err, &ins):
		return newError(CodeInsufficientFunds, ins.Error(), map[string]string{"available": ins.Available, "needed": ins.Needed})
	case errors.As(err, &ce):
		data := map[string]string{}
		if ce.TxHash != "" {
			data["txHash"] = ce.TxHash
		}
		return newError(CodeChain, "chain error", data)
	case errors.As(err, &se):
		return newError(CodeWrongState, se.Error(), map[string]string{"state": se.State})
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

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
