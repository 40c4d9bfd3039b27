package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// markdown writes docs/api.md, the API reference.
func markdown(d *document) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<!-- %s -->\n\n", generated)
	b.WriteString(intro)
	b.WriteString("\n## Methods\n\n| method | params | result | session | timeout |\n|---|---|---|---|---|\n")
	for _, m := range d.Methods {
		var ps []string
		for _, p := range m.Params {
			n := p.Name
			if !p.Required {
				n += "?"
			}
			ps = append(ps, n)
		}
		params := "–"
		if len(ps) > 0 {
			params = "`{" + strings.Join(ps, ", ") + "}`"
		}
		session := ""
		if m.Session {
			session = "yes"
		}
		fmt.Fprintf(&b, "| [`%s`](#%s) | %s | %s | %s | %s (%s) |\n", m.Name, anchor(m.Name), params, mdType(m.Result.Schema), session, m.Timeout.Class, duration(m.Timeout.Seconds))
	}
	for _, m := range d.Methods {
		fmt.Fprintf(&b, "\n### %s\n\n%s", m.Name, m.Summary)
		if m.Description != "" {
			b.WriteString(" " + m.Description)
		}
		b.WriteString("\n\n")
		if len(m.Params) > 0 {
			b.WriteString("| param | type | required | description |\n|---|---|---|---|\n")
			for _, p := range m.Params {
				req := "no"
				if p.Required {
					req = "yes"
				}
				desc := p.Description
				if desc == "" && p.Schema != nil {
					desc = p.Schema.Description
				}
				fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", p.Name, mdType(p.Schema), req, desc)
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "**Result:** %s.", mdType(m.Result.Schema))
		if m.OnChain != "" {
			fmt.Fprintf(&b, " **On chain:** %s.", m.OnChain)
		}
		var errs []string
		for _, e := range m.Errors {
			name := e.Ref[strings.LastIndex(e.Ref, "/")+1:]
			errs = append(errs, fmt.Sprintf("%d", d.Components.Errors[name].Code))
		}
		fmt.Fprintf(&b, " **Errors:** %s.\n", strings.Join(errs, ", "))
		for _, n := range m.Notifications {
			fmt.Fprintf(&b, "\n- topic `%s`: %s; each notification's `result` is a %s.\n", n.Topic, n.Description, mdType(n.Result))
		}
		for _, ex := range m.Examples {
			req := map[string]json.RawMessage{}
			for _, p := range ex.Params {
				req[p.Name] = p.Value
			}
			params, _ := json.Marshal(req)
			fmt.Fprintf(&b, "\nExample (%s):\n\n```json\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"%s\",\"params\":%s}\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":%s}\n```\n",
				ex.Name, m.Name, params, compact(ex.Result.Value))
		}
	}
	b.WriteString("\n## Objects\n")
	for _, name := range slices.Sorted(maps.Keys(d.Components.Schemas)) {
		s := d.Components.Schemas[name]
		if strings.HasSuffix(name, "Data") {
			continue // below, with the errors
		}
		fmt.Fprintf(&b, "\n### %s\n\n", name)
		writeFields(&b, s)
	}
	b.WriteString("\n## Errors\n\n`{\"code\": C, \"message\": text, \"data\": {...}}`; every method lists the codes it can return.\n\n| code | name | meaning | data |\n|---|---|---|---|\n")
	for _, name := range slices.SortedFunc(maps.Keys(d.Components.Errors), func(a, b string) int {
		return int(d.Components.Errors[a].Code - d.Components.Errors[b].Code)
	}) {
		e := d.Components.Errors[name]
		data := "–"
		if e.DataSchema != nil {
			data = dataFields(d, e.DataSchema)
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s |\n", e.Code, name, e.Message, data)
	}
	b.WriteString("\nBesides: -32700 parse error (id null), -32600 invalid request, -32601 method not found.\n")
	return b.String()
}

func anchor(name string) string { return strings.ToLower(name) }

func duration(s int64) string {
	if s%60 == 0 {
		return fmt.Sprintf("%d min", s/60)
	}
	return fmt.Sprintf("%d s", s)
}

func compact(raw json.RawMessage) string {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return string(raw)
	}
	return buf.String()
}

// mdType names a schema's type in the reference, linking objects.
func mdType(s *schema) string {
	switch {
	case s == nil:
		return "any"
	case s.Ref != "":
		n := s.Ref[strings.LastIndex(s.Ref, "/")+1:]
		return fmt.Sprintf("[%s](#%s)", n, strings.ToLower(n))
	case len(s.AllOf) == 1:
		return mdType(s.AllOf[0])
	case len(s.OneOf) > 0:
		var ts []string
		for _, o := range s.OneOf {
			ts = append(ts, mdType(o))
		}
		return strings.Join(ts, " or ")
	case len(s.Enum) > 0:
		return "`" + strings.Join(s.Enum, "` \\| `") + "`"
	case s.Type == "array":
		return "list of " + mdType(s.Items)
	case s.Type == "object" && s.MaxProperties != nil && *s.MaxProperties == 0:
		return "`{}`"
	case s.Type == "object" && len(s.Properties) > 0:
		return "`{" + strings.Join(slices.Sorted(maps.Keys(s.Properties)), ", ") + "}`"
	case s.Pattern != "":
		return fmt.Sprintf("%s `%s`", s.Type, s.Pattern)
	case s.Format != "":
		return s.Type + " (" + s.Format + ")"
	}
	return s.Type
}

func writeFields(b *strings.Builder, s *schema) {
	if len(s.Properties) == 0 {
		fmt.Fprintf(b, "%s\n", mdType(s))
		return
	}
	b.WriteString("| field | type | always | description |\n|---|---|---|---|\n")
	for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
		p := s.Properties[name]
		always := ""
		if slices.Contains(s.Required, name) {
			always = "yes"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", name, mdType(p), always, p.Description)
	}
}

func dataFields(d *document, s *schema) string {
	if s.Ref != "" {
		s = d.Components.Schemas[s.Ref[strings.LastIndex(s.Ref, "/")+1:]]
	}
	var fs []string
	for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
		if !slices.Contains(s.Required, name) {
			name += "?"
		}
		fs = append(fs, name)
	}
	return "`{" + strings.Join(fs, ", ") + "}`"
}

const intro = `# perund JSON-RPC 2.0 API

The reference of perund's user API. perund serves it as an OpenRPC document (` + "`rpc_discover`" + `);
this page, the JavaScript client's method table and wrappers (web/client/api.js) and its TypeScript
declarations (web/client/perund.d.ts) are generated from that document by ` + "`go run ./tools/apigen`" + `,
and a test fails when they are stale. Where the reference is silent, [api-notes.md](api-notes.md)
says what perund does.

## Transport

- WebSocket endpoint ` + "`ws://HOST:PORT/rpc`" + ` (default listen ` + "`127.0.0.1:8400`" + `); ` + "`wss://`" + ` when TLS is
  configured. One JSON-RPC message (object or batch array) per text frame, valid UTF-8.
- The same HTTP server serves the web wallet at ` + "`/`" + ` and ` + "`GET /healthz`" + `.
- Origin check on the upgrade: same origin and clients without an Origin header are allowed; other
  origins only when listed in ` + "`rpc.allowedOrigins`" + `.
- Optional node token (` + "`rpc.authToken`" + `): the upgrade needs ` + "`Authorization: Bearer T`" + ` or ` + "`?token=T`" + `,
  otherwise HTTP 401.
- Limits: message size (` + "`rpc.maxMessageSize`" + `, 1 MiB: larger closes the connection with 1009),
  connections, pending calls per connection. Ping/pong keepalive.

## JSON-RPC 2.0

- Requests, notifications (no id: no answer) and batches. Calls of one connection run concurrently.
- ` + "`id`" + `: a string, number or null, echoed exactly as sent.
- ` + "`params`" + `: by name (an object), by position (an array in the order of the params below), or an
  array holding the object of named params (as Ethereum clients send them). A method without
  params takes none, ` + "`[]`" + ` or ` + "`{}`" + `. Unknown params are refused.
- Every error of a param is -32602 with ` + "`data.field`" + ` the full path of the param (` + "`balance.mine`" + `).
- Each connection is bound to one session (` + "`session_open`" + ` or ` + "`session_resume`" + `); the methods marked
  *session* need it (else 1001).
- Timeouts: *quick* calls answer within 30 s; calls that wait for the peer or the chain take up to
  30 min (the node's bound; clients read it from the document's ` + "`x-timeout`" + `).

## Values

- Amounts: decimal strings in the asset's base unit (wei for ETH), never JSON numbers.
- Addresses: 0x and 40 hex digits, returned EIP-55 checksummed, accepted in lower or upper case or
  with a valid checksum. Channel, proposal and update ids: 0x and 64 hex digits.
- Times: RFC 3339 wall-clock times. Durations: integer seconds.
- Balances in a channel are from the caller's side: ` + "`{mine, theirs}`" + `.

## Subscriptions

` + "`perun_subscribe`" + ` with a topic answers a subscription id; each event is then a notification
` + "`{\"jsonrpc\":\"2.0\",\"method\":\"perun_subscription\",\"params\":{\"subscription\":ID,\"result\":EVENT}}`" + `.
A subscription belongs to its connection and ends with it; the session and its channels do not.
The topics and their events are listed under [perun_subscribe](#perun_subscribe).
`
