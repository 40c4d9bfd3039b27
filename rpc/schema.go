package rpc

import (
	"go/token"
	"maps"
	"reflect"
	"strings"
	"time"
)

// schemas derives JSON schemas (the OpenRPC document's dialect, draft 7)
// from Go types: the params structs, the results and the error data. An
// exported named struct becomes a component (#/components/schemas/Name),
// referenced wherever it is used; everything else is inlined.
type schemas struct {
	components map[string]any
}

func newSchemas() *schemas { return &schemas{components: map[string]any{}} }

// maybeType is implemented by Maybe[T]: its schema is T or {}.
type maybeType interface{ elemType() reflect.Type }

func (Maybe[T]) elemType() reflect.Type { return reflect.TypeFor[T]() }

var (
	schemaerType = reflect.TypeFor[schemaer]()
	maybeIface   = reflect.TypeFor[maybeType]()
	timeType     = reflect.TypeFor[time.Time]()
	emptyType    = reflect.TypeFor[Empty]()
)

// componentNames renames the node's view types for the document.
var componentNames = map[string]string{
	"ChannelInfo":  "Channel",
	"ProposalInfo": "Proposal",
	"UpdateInfo":   "Update",
	"SessionInfo":  "Session",
	"AssetInfo":    "Asset",
}

func componentName(t reflect.Type) string {
	if n, ok := componentNames[t.Name()]; ok {
		return n
	}
	return t.Name()
}

// of returns the schema of t.
func (s *schemas) of(t reflect.Type) map[string]any {
	if t.Kind() == reflect.Pointer {
		return s.of(t.Elem())
	}
	if t.Implements(schemaerType) {
		return reflect.Zero(t).Interface().(schemaer).jsonSchema()
	}
	if t.Implements(maybeIface) {
		inner := reflect.Zero(t).Interface().(maybeType).elemType()
		return map[string]any{"oneOf": []any{s.of(inner), map[string]any{"type": "object", "maxProperties": 0}}}
	}
	switch t {
	case timeType:
		return map[string]any{"type": "string", "format": "date-time", "description": "wall-clock time, RFC 3339"}
	case emptyType:
		return map[string]any{"type": "object", "maxProperties": 0}
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": s.of(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": s.of(t.Elem())}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		if !token.IsExported(t.Name()) {
			return s.object(t)
		}
		name := componentName(t)
		if _, ok := s.components[name]; !ok {
			s.components[name] = map[string]any{} // a recursive use sees the name
			s.components[name] = s.object(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

// object is the schema of a struct: its json fields, required unless
// omitempty or a pointer; embedded structs add their fields.
func (s *schemas) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []any
	s.fields(t, props, &required, false)
	out := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		out["required"] = required
	}
	return out
}

func (s *schemas) fields(t reflect.Type, props map[string]any, required *[]any, optional bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && tag == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				s.fields(et, props, required, optional || f.Type.Kind() == reflect.Pointer)
				continue
			}
		}
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		sc := s.of(f.Type)
		if kind := f.Tag.Get("api"); kind != "" {
			sc = apiKind(kind, sc)
		}
		if doc := f.Tag.Get("doc"); doc != "" {
			sc = withDescription(sc, doc)
		}
		props[name] = sc
		req := !optional && !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer
		if isParamsStruct(t) {
			req = f.Tag.Get("rpc") == "required"
		}
		if req {
			*required = append(*required, name)
		}
	}
}

// isParamsStruct tells a params struct, named ...Params (its fields are
// required only when tagged rpc:"required"), from a result struct (every
// field is present unless it is omitempty or a pointer).
func isParamsStruct(t reflect.Type) bool { return strings.HasSuffix(t.Name(), "Params") }

// withDescription adds a description to a schema; a $ref gets it through
// allOf (draft 7 ignores siblings of $ref).
func withDescription(sc map[string]any, doc string) map[string]any {
	if _, ok := sc["$ref"]; ok {
		return map[string]any{"allOf": []any{sc}, "description": doc}
	}
	out := maps.Clone(sc)
	out["description"] = doc
	return out
}

// apiKind is the schema of a field of the node's views that holds one of
// the API's recurring values as a plain string (tag api:"KIND"): hash,
// amount, signedAmount, address, channelState or enum:a,b,c. A list gets
// it for its items.
func apiKind(kind string, sc map[string]any) map[string]any {
	if sc["type"] == "array" {
		out := maps.Clone(sc)
		out["items"] = apiKind(kind, sc["items"].(map[string]any))
		return out
	}
	switch {
	case kind == "hash":
		return Hash("").jsonSchema()
	case kind == "amount":
		return Amount{}.jsonSchema()
	case kind == "signedAmount":
		return map[string]any{"type": "string", "pattern": `^-?[0-9]{1,78}$`, "description": "a signed amount in base units, a decimal string"}
	case kind == "address":
		return Address{}.jsonSchema()
	case kind == "channelState":
		return ChannelState("").jsonSchema()
	case strings.HasPrefix(kind, "enum:"):
		return map[string]any{"type": "string", "enum": anys(strings.Split(strings.TrimPrefix(kind, "enum:"), ","))}
	}
	panic("rpc: unknown api kind " + kind)
}
