package rpc

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/sourcegraph/jsonrpc2"
)

// openRPC builds the OpenRPC document (1.2.6) of the method table: params
// and result schemas derived from the methods' Go types, components for the
// shared objects and the error data, each method's errors and examples,
// its timeout class (x-timeout) and the subscription topics with their
// notification payloads (x-notifications on perun_subscribe).
func openRPC(m map[string]*method) map[string]any {
	sc := newSchemas()
	codes := errorCodes()
	errRef := func(code int64) map[string]any {
		for _, ec := range codes {
			if ec.code == code {
				return map[string]any{"$ref": "#/components/errors/" + ec.name}
			}
		}
		panic(fmt.Sprintf("rpc: method declares unknown error code %d", code))
	}
	methods := make([]any, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		md := m[name]
		params := []any{}
		for _, f := range paramFields(md.params) {
			p := map[string]any{"name": f.name, "required": f.required, "schema": sc.of(md.params.Field(f.index).Type)}
			if f.doc != "" {
				p["description"] = f.doc
			}
			params = append(params, p)
		}
		errs := []any{errRef(jsonrpc2.CodeInvalidParams)}
		if md.session {
			errs = append(errs, errRef(CodeUnauthorized))
		}
		for _, code := range md.errors {
			if code != CodeUnauthorized || !md.session {
				errs = append(errs, errRef(code))
			}
		}
		if !slices.Contains(md.errors, CodeTimeout) {
			errs = append(errs, errRef(CodeTimeout)) // the node shutting down interrupts any call
		}
		errs = append(errs, errRef(jsonrpc2.CodeInternalError))
		doc := map[string]any{
			"name":           name,
			"summary":        md.summary,
			"paramStructure": "either",
			"params":         params,
			"result":         resultDoc(sc.of(md.result)),
			"errors":         errs,
			"x-timeout":      map[string]any{"class": string(md.class), "seconds": int64(md.class.timeout().Seconds())},
			"x-session":      md.session,
		}
		if md.desc != "" {
			doc["description"] = md.desc
		}
		if md.onChain != "" {
			doc["x-on-chain"] = md.onChain
		}
		if exs := examplesDoc(md); len(exs) > 0 {
			doc["examples"] = exs
		}
		if name == "perun_subscribe" {
			notes := make([]any, len(topics))
			for i, tp := range topics {
				notes[i] = map[string]any{"topic": string(tp.topic), "description": tp.desc,
					"result": sc.of(reflect.TypeOf(tp.payload))}
			}
			doc["x-notifications"] = notes
		}
		methods = append(methods, doc)
	}
	components := map[string]any{}
	errComps := map[string]any{}
	for _, ec := range codes {
		e := map[string]any{"code": ec.code, "message": ec.message}
		if ec.data != nil {
			// An error object has no schema of its own in OpenRPC: the
			// data's schema is an extension, its type a component.
			e["x-data-schema"] = sc.of(reflect.TypeOf(ec.data))
		}
		errComps[ec.name] = e
	}
	components["errors"] = errComps
	components["schemas"] = sc.components
	return map[string]any{
		"openrpc": "1.2.6",
		"info": map[string]any{"title": "perund JSON-RPC API", "version": "1.0.0",
			"description": "Perun state channels over JSON-RPC 2.0 on WebSocket (/rpc). Params by name (an object), by position (an array in the order of the params), or as an array holding the object of named params. Amounts are decimal strings in base units (wei for ETH); times are RFC 3339 wall-clock times. Each connection is bound to one session (session_open or session_resume). Notifications: perun_subscription (see perun_subscribe's x-notifications). x-timeout is how long a call may take: quick, or waiting for the peer or for the chain."},
		"methods":    methods,
		"components": components,
		// The OpenRPC meta-schema allows no extension on an error object;
		// x-data-schema is declared as a specification extension for it.
		"x-extensions": []any{map[string]any{
			"openrpcExtension": "0.0.0-development", "name": "x-data-schema", "version": "1.0.0",
			"summary":     "the JSON schema of the error's data",
			"description": "On an error object (components.errors): the JSON schema of the data member of the error, usually a $ref to one of components.schemas.",
			"restricted":  []any{"errorObject"},
			"schema":      map[string]any{"type": "object"},
		}},
	}
}

// examplesDoc renders a method's examples as OpenRPC example pairings.
func examplesDoc(md *method) []any {
	out := make([]any, 0, len(md.examples))
	for _, ex := range md.examples {
		v := reflect.ValueOf(ex.params)
		params := []any{}
		for _, f := range paramFields(md.params) {
			fv := v.Field(f.index)
			if fv.IsZero() && !f.required {
				continue
			}
			params = append(params, map[string]any{"name": f.name, "value": fv.Interface()})
		}
		out = append(out, map[string]any{"name": ex.name, "params": params,
			"result": map[string]any{"name": "result", "value": ex.result}})
	}
	return out
}

// Document returns the OpenRPC document of the API, as rpc_discover
// answers it.
func Document() map[string]any { return openRPC(methodTable()) }

// resultDoc is the content descriptor of a result, described by what it
// holds.
func resultDoc(schema map[string]any) map[string]any {
	return map[string]any{"name": "result", "description": describe(schema), "schema": schema}
}

func describe(schema map[string]any) string {
	if ref, ok := schema["$ref"].(string); ok {
		return ref[strings.LastIndex(ref, "/")+1:]
	}
	if one, ok := schema["oneOf"].([]any); ok && len(one) == 2 {
		return describe(one[0].(map[string]any)) + ", or {} when there is none"
	}
	switch schema["type"] {
	case "array":
		return "list of " + describe(schema["items"].(map[string]any))
	case "object":
		props, _ := schema["properties"].(map[string]any)
		if len(props) == 0 {
			if _, ok := schema["additionalProperties"]; ok {
				return "object"
			}
			return "{}"
		}
		return "{" + strings.Join(slices.Sorted(maps.Keys(props)), ", ") + "}"
	case nil:
		return "any"
	}
	return schema["type"].(string)
}
