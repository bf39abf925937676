package herald

// The binding against the core's contract (include/herald.schema.json, generated
// from the Rust types): every config key, event, event field, authorizer field,
// stats key and status the schema has must exist here too.

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

type schemaDoc struct {
	Defs map[string]schemaNode `json:"$defs"`
}

type schemaNode struct {
	Ref        string                `json:"$ref"`
	AnyOf      []schemaNode          `json:"anyOf"`
	OneOf      []schemaNode          `json:"oneOf"`
	Properties map[string]schemaNode `json:"properties"`
	Const      any                   `json:"const"`
	Title      string                `json:"title"`
	Items      *schemaNode           `json:"items"`
}

func loadContract(t *testing.T) schemaDoc {
	t.Helper()
	raw, err := os.ReadFile("../../include/herald.schema.json")
	if err != nil {
		t.Fatalf("read the contract: %v", err)
	}
	var doc schemaDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse the contract: %v", err)
	}
	return doc
}

// defName is the definition a property refers to ("" for none), directly, through
// anyOf (an optional value) or through items (a list).
func defName(n schemaNode) string {
	if n.Ref != "" {
		return strings.TrimPrefix(n.Ref, "#/$defs/")
	}
	for _, alt := range n.AnyOf {
		if name := defName(alt); name != "" {
			return name
		}
	}
	if n.Items != nil {
		return defName(*n.Items)
	}
	return ""
}

// jsonFields maps each JSON name of a struct's fields to the field's type.
func jsonFields(typ reflect.Type) map[string]reflect.Type {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
		typ = typ.Elem()
	}
	fields := map[string]reflect.Type{}
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			fields[name] = f.Type
		}
	}
	return fields
}

// checkObject checks that Go type typ has a JSON field for each property of def, and
// recurses into the definitions the properties refer to.
func checkObject(t *testing.T, doc schemaDoc, def string, typ reflect.Type) {
	t.Helper()
	node, ok := doc.Defs[def]
	if !ok {
		t.Fatalf("the contract has no %s", def)
	}
	fields := jsonFields(typ)
	for key, prop := range node.Properties {
		goType, ok := fields[key]
		if !ok {
			t.Errorf("%s: the contract's key %q is missing from Go's %s", def, key, typ)
			continue
		}
		if inner := defName(prop); inner != "" {
			checkObject(t, doc, inner, goType)
		}
	}
}

func TestContractConfigKeys(t *testing.T) {
	checkObject(t, loadContract(t), "Config", reflect.TypeOf(Config{}))
}

func TestContractStatsKeys(t *testing.T) {
	checkObject(t, loadContract(t), "Stats", reflect.TypeOf(Stats{}))
}

func TestContractAuthorizer(t *testing.T) {
	doc := loadContract(t)
	checkObject(t, doc, "AuthDecision", reflect.TypeOf(AuthDecision{}))
	wire := jsonFields(reflect.TypeOf(wireAuthRequest{}))
	for _, variant := range doc.Defs["AuthRequest"].OneOf {
		for key := range variant.Properties {
			if _, ok := wire[key]; !ok {
				t.Errorf("authorize request field %q is not read by the binding", key)
			}
		}
	}
}

func TestContractStatuses(t *testing.T) {
	statuses := loadContract(t).Defs["Status"].OneOf
	if len(statuses) == 0 {
		t.Fatal("the contract lists no status")
	}
	for _, s := range statuses {
		code := Status(int(s.Const.(float64)))
		if got := code.String(); got != s.Title {
			t.Errorf("status %d: the binding calls it %q, the contract %q", int(code), got, s.Title)
		}
	}
}

// eventTypes are the package's EventType constants, read from its source so that a
// constant cannot be missed by a hand-kept list.
func eventTypes(t *testing.T) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "event.go", nil, 0)
	if err != nil {
		t.Fatalf("parse event.go: %v", err)
	}
	found := map[string]bool{}
	ast.Inspect(file, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		if ident, ok := spec.Type.(*ast.Ident); !ok || ident.Name != "EventType" {
			return true
		}
		for _, v := range spec.Values {
			if lit, ok := v.(*ast.BasicLit); ok {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					found[s] = true
				}
			}
		}
		return true
	})
	return found
}

func TestContractEvents(t *testing.T) {
	doc := loadContract(t)
	known := eventTypes(t)
	wire := jsonFields(reflect.TypeOf(wireEvent{}))
	variants := doc.Defs["Event"].OneOf
	if len(variants) == 0 {
		t.Fatal("the contract lists no event")
	}
	for _, variant := range variants {
		typ, _ := variant.Properties["type"].Const.(string)
		if !known[typ] {
			t.Errorf("event %q has no EventType constant", typ)
		}
		for key := range variant.Properties {
			if _, ok := wire[key]; !ok {
				t.Errorf("event %q: field %q is not read by the binding", typ, key)
			}
		}
	}
}
