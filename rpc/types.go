package rpc

import (
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"strings"

	"github.com/ethereum/go-ethereum/common"

	"github.com/perund/perund/contacts"
	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
)

// The recurring fields of the API are types that validate themselves when
// they are decoded and describe themselves in the OpenRPC document
// (schemaer). A decoding error of one of them names what is wrong; the
// decoder puts the field's path in front of it.

// schemaer is a type that gives its own JSON schema.
type schemaer interface {
	jsonSchema() map[string]any
}

// Patterns of the recurring fields, shared by their decoders and schemas.
const (
	amountPattern  = `^[0-9]{1,78}$`
	hashPattern    = `^0x[0-9a-fA-F]{64}$`
	addressPattern = `^0x[0-9a-fA-F]{40}$`
	symbolPattern  = `^[A-Za-z0-9]{1,11}$`
)

var (
	amountRE = regexp.MustCompile(amountPattern)
	hashRE   = regexp.MustCompile(hashPattern)
	symbolRE = regexp.MustCompile(symbolPattern)
)

// unquote decodes a JSON string, or says that the value is not one.
func unquote(b []byte) (string, error) {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", errMustBe("a string")
	}
	return s, nil
}

// valueError is what a self-validating type reports; the decoder prefixes
// the field's path ("balance.mine must be ...").
type valueError string

func (e valueError) Error() string { return string(e) }

func errMustBe(what string) error { return valueError("must be " + what) }

// Amount is a non-negative amount in the asset's base units, written as a
// decimal string (wei for ETH).
type Amount struct{ big.Int }

// UnmarshalJSON accepts a decimal string of up to 78 digits.
func (a *Amount) UnmarshalJSON(b []byte) error {
	s, err := unquote(b)
	if err != nil {
		return errMustBe("a decimal string of base units (wei for ETH)")
	}
	if !amountRE.MatchString(s) {
		return valueError(fmt.Sprintf("must be a non-negative decimal integer string in base units, got %q", s))
	}
	a.SetString(s, 10)
	return nil
}

// MarshalJSON writes the decimal string.
func (a Amount) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }

func (Amount) jsonSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": amountPattern,
		"description": "amount in base units of the asset (wei for ETH), a decimal string", "examples": []any{"1000000000000000000"}}
}

// Hash is a 32-byte id (channel, proposal or update id), 0x and 64 hex
// digits; it is kept in lower case.
type Hash string

// UnmarshalJSON accepts 0x followed by 64 hex digits.
func (h *Hash) UnmarshalJSON(b []byte) error {
	s, err := unquote(b)
	if err != nil {
		return errMustBe("0x followed by 64 hex digits")
	}
	if !hashRE.MatchString(s) {
		return errMustBe("0x followed by 64 hex digits")
	}
	*h = Hash(strings.ToLower(s))
	return nil
}

func (Hash) jsonSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": hashPattern,
		"examples": []any{"0x" + strings.Repeat("ab", 32)}}
}

// Address is an Ethereum address, 0x and 40 hex digits (a mixed-case
// address must have a valid EIP-55 checksum).
type Address struct{ common.Address }

// UnmarshalJSON accepts a 0x-prefixed hex address.
func (a *Address) UnmarshalJSON(b []byte) error {
	s, err := unquote(b)
	if err != nil {
		return errMustBe("a 0x-prefixed hex address")
	}
	addr, err := contacts.ParseAddress(s)
	if err != nil {
		return valueError(err.Error())
	}
	a.Address = addr
	return nil
}

// MarshalJSON writes the checksummed hex address.
func (a Address) MarshalJSON() ([]byte, error) { return json.Marshal(a.Hex()) }

func (Address) jsonSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": addressPattern,
		"examples": []any{"0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"}}
}

// Symbol is an asset's symbol as the node lists it (node_info.assets):
// ETH, or a configured ERC20 token.
type Symbol string

// UnmarshalJSON accepts 1 to 11 letters or digits.
func (s *Symbol) UnmarshalJSON(b []byte) error {
	v, err := unquote(b)
	if err != nil || !symbolRE.MatchString(v) {
		return errMustBe("an asset symbol of 1 to 11 letters or digits (node_info.assets)")
	}
	*s = Symbol(v)
	return nil
}

func (Symbol) jsonSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": symbolPattern, "default": node.AssetETH,
		"description": "asset symbol (node_info.assets)", "examples": []any{node.AssetETH}}
}

// ChannelState is a channel's state as the API shows it.
type ChannelState string

// channelStates are the states, in their order of life.
var channelStates = []string{node.StateOpening, node.StateOpen, node.StateClosing, node.StateRegistered, node.StateClosed}

// UnmarshalJSON accepts one of the channel states.
func (c *ChannelState) UnmarshalJSON(b []byte) error {
	v, err := unquote(b)
	if err == nil {
		for _, s := range channelStates {
			if v == s {
				*c = ChannelState(v)
				return nil
			}
		}
	}
	return errMustBe("one of " + strings.Join(channelStates, ", "))
}

func (ChannelState) jsonSchema() map[string]any {
	return map[string]any{"type": "string", "enum": anys(channelStates)}
}

// Topic is a subscription topic.
type Topic subscriptions.Topic

// topics are the subscription topics with the payload of their
// notifications.
var topics = []struct {
	topic   subscriptions.Topic
	payload any
	desc    string
}{
	{subscriptions.Proposals, node.ProposalInfo{}, "incoming channel proposals: pending when they arrive, then accepted, rejected or expired"},
	{subscriptions.Updates, node.UpdateInfo{}, "incoming channel updates (payments, requests, closes): pending, then accepted, rejected or expired"},
	{subscriptions.Channels, node.ChannelInfo{}, "every change of one of the session's channels (opening, open, new version, closing, registered, closed)"},
	{subscriptions.Disputes, node.DisputeEvent{}, "on-chain events of the session's channels (registered, refutation, concluded, withdrawn), also those that happened while the user was logged out"},
}

// UnmarshalJSON accepts one of the topics.
func (t *Topic) UnmarshalJSON(b []byte) error {
	v, err := unquote(b)
	if err == nil {
		if tp, perr := subscriptions.ParseTopic(v); perr == nil {
			*t = Topic(tp)
			return nil
		}
	}
	names := make([]string, len(topics))
	for i, tp := range topics {
		names[i] = string(tp.topic)
	}
	return errMustBe("one of " + strings.Join(names, ", "))
}

func (Topic) jsonSchema() map[string]any {
	names := make([]any, len(topics))
	for i, tp := range topics {
		names[i] = string(tp.topic)
	}
	return map[string]any{"type": "string", "enum": names}
}

// Maybe is a result that is an object of type T or, when there is none,
// the empty object {}.
type Maybe[T any] struct{ V *T }

// MarshalJSON writes V, or {} when V is nil.
func (m Maybe[T]) MarshalJSON() ([]byte, error) {
	if m.V == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(m.V)
}

// Empty is the result of a method that has nothing to return: {}.
type Empty struct{}

func anys(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
