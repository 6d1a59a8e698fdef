package tomlstrict

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

type testDoc struct {
	Name    string            `toml:"name"`
	Ignored string            `toml:"-"`
	private string            // unexported fields are not keys
	Untaged int               // decoded from "Untaged", as go-toml does
	Server  *testServer       `toml:"server"`
	Items   []testItem        `toml:"items"`
	Labels  map[string]string `toml:"labels"`
	Groups  map[string]testItem
	Extra   any         `toml:"extra"`
	Ports   []int       `toml:"ports,omitempty"`
	Matrix  [][]int     `toml:"matrix"`
	Ptrs    []*testItem `toml:"ptrs"`
	testEmbedded
	Named testEmbedded `toml:"named"`
}

type testServer struct {
	Host string `toml:"host"`
	TLS  struct {
		Cert string `toml:"cert"`
	} `toml:"tls"`
}

type testItem struct {
	ID   int    `toml:"id"`
	Kind string `toml:"kind"`
	Sub  []struct {
		Value string `toml:"value"`
	} `toml:"sub"`
}

type testEmbedded struct {
	Flat string `toml:"flat"`
}

var testDocType = reflect.TypeFor[testDoc]()

// unknownLines renders Unknown's result as "line:col key hint" lines.
func unknownLines(t *testing.T, doc string, allow func([]string) bool) string {
	t.Helper()
	idx, err := NewIndex([]byte(doc))
	if err != nil {
		t.Fatalf("NewIndex: %v", err)
	}
	var lines []string
	for _, u := range idx.Unknown(testDocType, allow) {
		lines = append(lines, fmt.Sprintf("%d:%d %s", u.Pos.Line, u.Pos.Col, u.Message()))
	}
	return strings.Join(lines, "\n")
}

func TestUnknown(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"all known", `
name = "x"
Untaged = 1
flat = "f"
extra = { anything = { goes = 1 } }
labels = { any = "key", "with space" = "ok" }
ports = [1, 2]
matrix = [[1], [2]]
[server]
host = "h"
tls.cert = "c"
[named]
flat = "n"
[Groups.g1]
id = 1
[[items]]
id = 1
[[items.sub]]
value = "v"
[[ptrs]]
kind = "k"
`, ""},
		{"exact spelling at top level", `Name = "x"`, `1:1 unknown key "Name" (did you mean "name"?)`},
		{"tag name wins over Go name", "Labels = {}\nuntaged = 1",
			"1:1 unknown key \"Labels\" (did you mean \"labels\"?)\n2:1 unknown key \"untaged\" (did you mean \"Untaged\"?)"},
		{"toml:\"-\" and unexported are not keys", "Ignored = 1\nprivate = 2",
			"1:1 unknown key \"Ignored\"\n2:1 unknown key \"private\""},
		{"typo hint", "nmae = 1", `1:1 unknown key "nmae" (did you mean "name"?)`},
		{"no hint when far", "zzzzzz = 1", `1:1 unknown key "zzzzzz"`},
		{"sub-table header", "[server]\nHost = 1", `2:1 unknown key "server.Host" (did you mean "host"?)`},
		{"nested sub-table header", "[server.tls]\ncrt = 1", `2:1 unknown key "server.tls.crt" (did you mean "cert"?)`},
		{"unknown table header, reported at its part", "[server.tsl]\ncert = 1", `1:9 unknown key "server.tsl" (did you mean "tls"?)`},
		{"dotted key, reported at the unknown part", "server.tls.Cert = 1", `1:12 unknown key "server.tls.Cert" (did you mean "cert"?)`},
		{"dotted key, unknown prefix reported once", "srv.a = 1\nsrv.b = 2", `1:1 unknown key "srv"`},
		{"quoted keys", "\"name\" = \"x\"\n'na me' = 1\n[server.\"tls\"]\n\"Cert\" = 1",
			"2:1 unknown key \"\\\"na me\\\"\" (did you mean \"name\"?)\n4:1 unknown key \"server.tls.Cert\" (did you mean \"cert\"?)"},
		{"inline table", `server = { host = "h", tls = { cert = "c", key = "k" } }`, `1:44 unknown key "server.tls.key"`},
		{"array of tables, reported once", "[[items]]\nid = 1\nkid = 1\n[[items]]\nkid = 2",
			`3:1 unknown key "items.kid" (did you mean "id"?)`},
		{"nested array of tables", "[[items]]\n[[items.sub]]\nvalu = 1", `3:1 unknown key "items.sub.valu" (did you mean "value"?)`},
		{"array of inline tables", `items = [{ id = 1 }, { Id = 2, sub = [{ value = "v", VALUE = "w" }] }]`,
			"1:24 unknown key \"items.Id\" (did you mean \"id\"?)\n1:54 unknown key \"items.sub.VALUE\" (did you mean \"value\"?)"},
		{"array of pointers", "[[ptrs]]\nKind = 1", `2:1 unknown key "ptrs.Kind" (did you mean "kind"?)`},
		{"map of structs", "[Groups.g1]\nid = 1\nkind = 2\nsub = []\nnope = 3", `5:1 unknown key "Groups.g1.nope"`},
		{"map of strings takes any key", "[labels]\n\"Any Key\" = \"v\"", ""},
		{"interface takes anything", "[extra.a.b]\nc = 1", ""},
		{"embedded struct is flattened", "Flat = 1", `1:1 unknown key "Flat" (did you mean "flat"?)`},
		{"named embedded struct is a table", "[named]\nFlat = 1", `2:1 unknown key "named.Flat" (did you mean "flat"?)`},
		{"keys under a scalar are left to the decoder", "name.x = 1\n[ports.y]\nz = 1", ""},
		{"table where an array of tables belongs", "[items]\nid = 1\nkid = 2", `3:1 unknown key "items.kid" (did you mean "id"?)`},
		{"array where a table belongs is left to the decoder", "server = [{ host = 1 }]", ""},
		{"array of arrays of tables is left to the decoder", "items = [[{ nope = 1 }]]", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unknownLines(t, tc.doc, nil); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// TestUnknownAllow checks that an allowed key is accepted with everything
// below it, and that its siblings are still checked.
func TestUnknownAllow(t *testing.T) {
	allow := func(path []string) bool { return len(path) == 2 && path[0] == "server" && path[1] == "type" }
	got := unknownLines(t, "[server]\ntype = { a = 1 }\ntype2 = 1\n[server.type.deeper]\na = 1\n", allow)
	if want := `3:1 unknown key "server.type2"`; got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestPos(t *testing.T) {
	doc := `name = "x"
[server]
host = "h"
  tls.cert = "c"
[[items]]
id = 1
[[items]]
id = 2
[[items.sub]]
value = "v"
[labels]
"a b" = "q"
`
	idx, err := NewIndex([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  string
		want Position
	}{
		{"name", Position{1, 1}},
		{"server", Position{2, 2}},
		{"server.host", Position{3, 1}},
		{"server.tls", Position{4, 3}},
		{"server.tls.cert", Position{4, 7}},
		{"items", Position{5, 3}},
		{"items[1].id", Position{6, 1}}, // element indexes are dropped: the first one written
		{"items[0].sub[0].value", Position{10, 1}},
		{`labels."a b"`, Position{12, 1}},
		{"server.port", Position{2, 2}}, // not written: its section
		{"items[3].missing", Position{5, 3}},
		{"nowhere.at.all", Position{}},
		{"", Position{}},
	} {
		if got := idx.Pos(tc.key); got != tc.want {
			t.Errorf("Pos(%q) = %v, want %v", tc.key, got, tc.want)
		}
	}

	if path, ok := idx.KeyAt(Position{4, 7}); !ok || DisplayKey(path) != "server.tls.cert" {
		t.Errorf("KeyAt(4:7) = %q, %v", path, ok)
	}
	if _, ok := idx.KeyAt(Position{4, 1}); ok {
		t.Error("KeyAt(4:1) found a key where none starts")
	}

	var got []string
	for _, k := range idx.Keys() {
		got = append(got, strings.Join(k.Path, "/"))
	}
	want := "name server server/host server/tls server/tls/cert items items/[]/id items items/[]/id " +
		"items items/sub items/sub/[]/value labels labels/a b"
	if strings.Join(got, " ") != want {
		t.Errorf("Keys =\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
}

func TestNewIndexInvalid(t *testing.T) {
	for _, doc := range []string{"a =", "[a", "a = 1\na = [", "= 1"} {
		if _, err := NewIndex([]byte(doc)); err == nil {
			t.Errorf("NewIndex(%q) succeeded", doc)
		}
	}
}

func TestDisplayKey(t *testing.T) {
	for _, tc := range []struct {
		path []string
		want string
	}{
		{[]string{"a", "b-c", "d_e"}, "a.b-c.d_e"},
		{[]string{"a", Elem, "b"}, "a.b"},
		{[]string{"a b", "c.d", ""}, `"a b"."c.d".""`},
		{nil, ""},
	} {
		if got := DisplayKey(tc.path); got != tc.want {
			t.Errorf("DisplayKey(%q) = %s, want %s", tc.path, got, tc.want)
		}
	}
}

// TestUnknownManyTypos guards the reason this package exists: a file full of
// unknown keys is checked in linear time, not go-toml's quadratic.
func TestUnknownManyTypos(t *testing.T) {
	var b strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&b, "key%d = %d\n", i, i)
	}
	idx, err := NewIndex([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(idx.Unknown(testDocType, nil)); n != 20000 {
		t.Errorf("%d unknown keys, want 20000", n)
	}
}
