package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// ParseParams builds the params of a call from the command line:
//
//   - no arguments: no params (nil);
//   - one argument starting with { or [: that JSON, passed as is;
//   - otherwise key=value pairs making an object. A value is a string unless
//     it is true, false or null or starts with {, [ or " (then it must be
//     JSON and is taken as such): amounts are decimal strings in perund's
//     API, so amount=1000 gives "1000". key:=value takes the value as JSON
//     whatever it is (challengeDuration:=60). Dotted keys build nested
//     objects: balance.mine=5 balance.theirs=0 gives
//     {"balance":{"mine":"5","theirs":"0"}}.
//
// The error names the argument at fault.
func ParseParams(args []string) (json.RawMessage, error) {
	if len(args) == 0 {
		return nil, nil
	}
	if first := strings.TrimSpace(args[0]); strings.HasPrefix(first, "{") || strings.HasPrefix(first, "[") {
		if len(args) > 1 {
			return nil, fmt.Errorf("params given as JSON must be the only argument after the method (got %d more: %q)", len(args)-1, args[1])
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, []byte(first)); err != nil {
			return nil, fmt.Errorf("params %s: not valid JSON: %w", abbrev(first), err)
		}
		return buf.Bytes(), nil
	}
	obj := map[string]any{}
	for _, a := range args {
		key, val, ok := strings.Cut(a, "=")
		if !ok || key == "" || key == ":" {
			return nil, fmt.Errorf("param %q: want key=value, key:=JSON, or one JSON object or array", a)
		}
		var v any
		if k, raw := strings.CutSuffix(key, ":"); raw {
			key = k
			if !json.Valid([]byte(val)) {
				return nil, fmt.Errorf("param %s: the value after := must be JSON, got %s", key, abbrev(val))
			}
			v = json.RawMessage(val)
		} else {
			var err error
			if v, err = paramValue(key, val); err != nil {
				return nil, err
			}
		}
		if err := setPath(obj, key, v); err != nil {
			return nil, err
		}
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode params: %w", err)
	}
	return out, nil
}

// paramValue is the value of key=val: JSON for true, false, null and
// values starting with {, [ or ", else the string val.
func paramValue(key, val string) (any, error) {
	switch val {
	case "true", "false", "null":
		return json.RawMessage(val), nil
	}
	if val != "" && strings.ContainsRune(`{["`, rune(val[0])) {
		if !json.Valid([]byte(val)) {
			return nil, fmt.Errorf("param %s: a value starting with %c must be JSON, got %s (a string starting with it: %s='\"…\"')", key, val[0], abbrev(val), key)
		}
		return json.RawMessage(val), nil
	}
	return val, nil
}

// setPath sets the dotted key in obj to v, creating the objects on the way.
func setPath(obj map[string]any, key string, v any) error {
	parts := strings.Split(key, ".")
	for _, p := range parts {
		if p == "" {
			return fmt.Errorf("param %s: empty part in dotted key", key)
		}
	}
	m := obj
	for i, p := range parts[:len(parts)-1] {
		switch next := m[p].(type) {
		case nil:
			child := map[string]any{}
			m[p] = child
			m = child
		case map[string]any:
			m = next
		default:
			return fmt.Errorf("param %s: %s is already set to a value, not an object", key, strings.Join(parts[:i+1], "."))
		}
	}
	last := parts[len(parts)-1]
	switch m[last].(type) {
	case nil:
	case map[string]any:
		return fmt.Errorf("param %s: already an object, built from dotted keys", key)
	default:
		return fmt.Errorf("param %s: given twice", key)
	}
	m[last] = v
	return nil
}

// abbrev shortens s for an error message.
func abbrev(s string) string {
	const n = 40
	if len(s) > n {
		return fmt.Sprintf("%q…", s[:n])
	}
	return fmt.Sprintf("%q", s)
}
