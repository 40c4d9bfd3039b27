package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// A method's params are a struct; each exported field with a json tag is
// one parameter. Tags:
//
//	json:"name"        the parameter's name
//	rpc:"required"     the call fails without it (null counts as absent)
//	doc:"..."          its description in the OpenRPC document
//
// decodeParams fills such a struct from the params of a call, given by
// name (an object), by position (an array in the order of the fields), or
// as an array holding the one object of named params. Every error is a
// -32602 whose data.field is the full path of the field ("balance.mine").

// paramField is one parameter of a params struct.
type paramField struct {
	name     string
	index    int
	required bool
	doc      string
}

// paramFields lists the parameters of a params struct type, in order.
func paramFields(t reflect.Type) []paramField {
	var out []paramField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		out = append(out, paramField{name: name, index: i, required: f.Tag.Get("rpc") == "required", doc: f.Tag.Get("doc")})
	}
	return out
}

// decodeParams decodes raw (absent, an object or an array) into dst, a
// pointer to a params struct.
func decodeParams(raw json.RawMessage, dst any) error {
	v := reflect.ValueOf(dst).Elem()
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	if raw[0] == '[' {
		obj, err := positional(raw, v.Type())
		if err != nil {
			return err
		}
		raw = obj
	}
	return decodeValue("", raw, v)
}

// positional turns an array of params into the object of named params.
func positional(raw json.RawMessage, t reflect.Type) (json.RawMessage, error) {
	var arr []json.RawMessage
	if err := json.Unmarshal(raw, &arr); err != nil {
		return nil, invalidParams("params", "params: not a JSON array")
	}
	fields := paramFields(t)
	// [{...}]: the named params in an array, unless the first parameter is
	// itself an object.
	if len(arr) == 1 {
		if el := bytes.TrimSpace(arr[0]); len(el) > 0 && el[0] == '{' &&
			(len(fields) == 0 || !isObject(t.Field(fields[0].index).Type)) {
			return el, nil
		}
	}
	if len(arr) > len(fields) {
		names := make([]string, len(fields))
		for i, f := range fields {
			names[i] = f.name
		}
		return nil, invalidParams("params", fmt.Sprintf("params: %d positional params given, this method takes at most %d (%s)",
			len(arr), len(fields), strings.Join(names, ", ")))
	}
	obj := make(map[string]json.RawMessage, len(arr))
	for i, el := range arr {
		obj[fields[i].name] = el
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, invalidParams("params", "params: "+err.Error())
	}
	return b, nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// isObject tells whether a parameter's type is a JSON object (a struct
// that does not decode itself from another JSON type).
func isObject(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(unmarshalerType)
}

// decodeValue decodes raw into v; path names v in errors.
func decodeValue(path string, raw json.RawMessage, v reflect.Value) error {
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(raw); err != nil {
			var ve valueError
			if errors.As(err, &ve) {
				return invalidParams(path, path+" "+ve.Error())
			}
			return invalidParams(path, path+": "+err.Error())
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(raw) {
			v.SetZero()
			return nil
		}
		p := reflect.New(v.Type().Elem())
		if err := decodeValue(path, raw, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		return decodeStruct(path, raw, v)
	}
	if err := json.Unmarshal(raw, v.Addr().Interface()); err != nil {
		return invalidParams(path, fmt.Sprintf("%s must be of type %s", path, jsonTypeName(v.Type())))
	}
	return nil
}

func decodeStruct(path string, raw json.RawMessage, v reflect.Value) error {
	var obj map[string]json.RawMessage
	if b := bytes.TrimSpace(raw); len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &obj) != nil {
		field := path
		if field == "" {
			field = "params"
		}
		return invalidParams(field, field+" must be an object")
	}
	fields := paramFields(v.Type())
	known := make(map[string]bool, len(fields))
	for _, f := range fields {
		known[f.name] = true
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if !known[k] {
			if k == "" {
				k = `""` // the empty name, visibly
			}
			return invalidParams(join(path, k), "unknown parameter "+join(path, k))
		}
	}
	for _, f := range fields {
		fp := join(path, f.name)
		r, ok := obj[f.name]
		if !ok || isNull(r) {
			if f.required {
				return invalidParams(fp, fp+" is required")
			}
			continue
		}
		if err := decodeValue(fp, r, v.Field(f.index)); err != nil {
			return err
		}
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// jsonTypeName names the JSON type of a Go type in errors.
func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	}
	return "object"
}
