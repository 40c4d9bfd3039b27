// Command apigen writes what is derived from perund's OpenRPC document
// (rpc.Document, the document rpc_discover serves): the API reference
// docs/api.md, the JavaScript client's method table and typed wrappers
// web/client/api.js, and its TypeScript declarations web/client/perund.d.ts.
//
//	go run ./tools/apigen        # from the repository's root
//
// Its test fails when a written file differs from what it would write.
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/perund/perund/rpc"
)

// outputs are the generated files, relative to the repository's root.
func outputs(d *document) map[string]string {
	return map[string]string{
		"docs/api.md":            markdown(d),
		"web/client/api.js":      javascript(d),
		"web/client/perund.d.ts": typescript(d),
	}
}

func main() {
	d, err := load(rpc.Document())
	if err != nil {
		log.Fatal(err)
	}
	for path, text := range outputs(d) {
		if err := os.WriteFile(filepath.FromSlash(path), []byte(text), 0o644); err != nil {
			log.Fatal(err)
		}
		fmt.Println("wrote", path)
	}
}

// document is the part of the OpenRPC document the generators read.
type document struct {
	Info struct {
		Description string `json:"description"`
	} `json:"info"`
	Methods    []methodDoc `json:"methods"`
	Components struct {
		Schemas map[string]*schema  `json:"schemas"`
		Errors  map[string]errorDoc `json:"errors"`
	} `json:"components"`
}

type methodDoc struct {
	Name        string     `json:"name"`
	Summary     string     `json:"summary"`
	Description string     `json:"description"`
	Params      []paramDoc `json:"params"`
	Result      struct {
		Description string  `json:"description"`
		Schema      *schema `json:"schema"`
	} `json:"result"`
	Errors []struct {
		Ref string `json:"$ref"`
	} `json:"errors"`
	Examples []struct {
		Name   string `json:"name"`
		Params []struct {
			Name  string          `json:"name"`
			Value json.RawMessage `json:"value"`
		} `json:"params"`
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
	} `json:"examples"`
	Timeout struct {
		Class   string `json:"class"`
		Seconds int64  `json:"seconds"`
	} `json:"x-timeout"`
	Session       bool   `json:"x-session"`
	OnChain       string `json:"x-on-chain"`
	Notifications []struct {
		Topic       string  `json:"topic"`
		Description string  `json:"description"`
		Result      *schema `json:"result"`
	} `json:"x-notifications"`
}

type paramDoc struct {
	Name        string  `json:"name"`
	Required    bool    `json:"required"`
	Description string  `json:"description"`
	Schema      *schema `json:"schema"`
}

type errorDoc struct {
	Code       int64   `json:"code"`
	Message    string  `json:"message"`
	DataSchema *schema `json:"x-data-schema"`
}

// schema is the part of a JSON schema the generators read.
type schema struct {
	Ref                  string             `json:"$ref"`
	Type                 string             `json:"type"`
	Description          string             `json:"description"`
	Pattern              string             `json:"pattern"`
	Format               string             `json:"format"`
	Enum                 []string           `json:"enum"`
	Properties           map[string]*schema `json:"properties"`
	Required             []string           `json:"required"`
	Items                *schema            `json:"items"`
	AdditionalProperties json.RawMessage    `json:"additionalProperties"`
	MaxProperties        *int               `json:"maxProperties"`
	OneOf                []*schema          `json:"oneOf"`
	AllOf                []*schema          `json:"allOf"`
}

// load reads the document through JSON, as a client would.
func load(doc map[string]any) (*document, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode the document: %w", err)
	}
	var d document
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("decode the document: %w", err)
	}
	return &d, nil
}
