package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// StepTimeout bounds each step that is not the call itself: connecting,
// session_resume, session_open, perun_subscribe and rpc_discover, and the
// call of a method the node's document does not list (the node refuses it
// at once with -32601). -timeout replaces it.
const StepTimeout = 30 * time.Second

// TimeoutMargin is added to a method's x-timeout for the round trip: the
// node bounds the call with x-timeout.seconds and answers one that runs
// out of time with its own error (code 1006), which the client waits for.
const TimeoutMargin = 5 * time.Second

// unpublishedTimeout bounds the call of a method the document lists
// without an x-timeout (a node older than x-timeout): the longest bound
// such nodes had, so that a call waiting for the peer or the chain is not
// given up on while the node still carries it out.
const unpublishedTimeout = 30 * time.Minute

// document is what the client reads of the node's OpenRPC document
// (rpc_discover).
type document struct {
	Methods []struct {
		Name string `json:"name"`
		// Timeout is {"class": "quick"|"peer"|"chain", "seconds": N}:
		// the node's bound on a call of the method.
		Timeout json.RawMessage `json:"x-timeout"`
	} `json:"methods"`
}

// fetchDocument calls rpc_discover on c within timeout.
func fetchDocument(ctx context.Context, c *Conn, timeout time.Duration) (*document, error) {
	res, err := callWithin(ctx, c, "rpc_discover", nil, timeout)
	if err != nil {
		return nil, err
	}
	var d document
	if err := json.Unmarshal(res, &d); err != nil {
		return nil, fmt.Errorf("decode rpc_discover: %w", err)
	}
	return &d, nil
}

// callTimeout is how long a call of method waits for its answer per the
// document: its x-timeout.seconds plus TimeoutMargin; StepTimeout for a
// method the document does not list, unpublishedTimeout for one it lists
// without x-timeout.
func (d *document) callTimeout(method string) (time.Duration, error) {
	for _, m := range d.Methods {
		if m.Name != method {
			continue
		}
		if len(m.Timeout) == 0 || string(m.Timeout) == "null" {
			return unpublishedTimeout, nil
		}
		var xt struct {
			Seconds *float64 `json:"seconds"`
		}
		if err := json.Unmarshal(m.Timeout, &xt); err != nil || xt.Seconds == nil || *xt.Seconds < 0 || *xt.Seconds > 1e9 {
			return 0, fmt.Errorf("the node's rpc_discover gives %s the x-timeout %s, not {\"seconds\": N}", method, m.Timeout)
		}
		return time.Duration(*xt.Seconds*float64(time.Second)) + TimeoutMargin, nil
	}
	return StepTimeout, nil
}

// callTimeout is how long the call of method waits for its answer on c:
// -timeout if given, else what the node's document says of method
// (rpc_discover, called on c first).
func (o *options) callTimeout(ctx context.Context, c *Conn, method string) (time.Duration, error) {
	if o.timeout > 0 {
		return o.timeout, nil
	}
	d, err := fetchDocument(ctx, c, o.quick())
	if err == nil {
		var t time.Duration
		if t, err = d.callTimeout(method); err == nil {
			return t, nil
		}
	}
	return 0, fmt.Errorf("read the timeout of %s from the node's rpc_discover (-timeout sets it instead): %w", method, err)
}
