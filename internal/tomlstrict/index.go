package tomlstrict

import (
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// Position is a 1-based line and byte column in the document; the zero
// value means "no known place".
type Position struct {
	Line, Col int
}

// Elem is the path segment that stands for "an element of this array", in
// arrays of tables ([[a]]) and in arrays of inline tables (a = [{...}]).
const Elem = "[]"

// Key is one key as written in the document, with where it was written.
// Path holds the key's parts exactly as spelled (quotes removed), with Elem
// for array elements.
type Key struct {
	Path []string
	Pos  Position
}

// Index lists every key a document defines, in document order, with its
// position. go-toml's decoder does not expose the positions of decoded
// values, so a caller that wants a line for a later message keeps one.
type Index struct {
	keys  []Key
	first map[string]Position // by DisplayKey(path), where a key was first written
}

// NewIndex walks data. It fails only when data is not valid TOML; the error
// is go-toml's parser error, without a position, so callers that want to
// report syntax errors well decode with go-toml first and use its error.
//
// Every prefix of a dotted key is recorded at its own part, so that in
// `a.b.c = 1` an unknown "b" is reported at "b", not at "a".
func NewIndex(data []byte) (*Index, error) {
	idx := &Index{first: map[string]Position{}}
	lines := lineStarts(data)
	posOf := func(n *unstable.Node) Position {
		off := int(n.Raw.Offset)
		i := sort.Search(len(lines), func(i int) bool { return lines[i] > off }) - 1
		if i < 0 {
			i = 0
		}
		return Position{Line: i + 1, Col: off - lines[i] + 1}
	}
	add := func(path []string, pos Position) {
		p := append([]string(nil), path...)
		idx.keys = append(idx.keys, Key{Path: p, Pos: pos})
		k := DisplayKey(p)
		if _, ok := idx.first[k]; !ok {
			idx.first[k] = pos
		}
	}
	addKey := func(base []string, it unstable.Iterator) []string {
		path := append([]string(nil), base...)
		for it.Next() {
			n := it.Node()
			path = append(path, string(n.Data))
			add(path, posOf(n))
		}
		return path
	}
	var addValue func(path []string, v *unstable.Node)
	addValue = func(path []string, v *unstable.Node) {
		switch v.Kind {
		case unstable.InlineTable:
			for it := v.Children(); it.Next(); {
				kv := it.Node()
				if kv.Kind != unstable.KeyValue {
					continue
				}
				addValue(addKey(path, kv.Key()), kv.Value())
			}
		case unstable.Array:
			for it := v.Children(); it.Next(); {
				el := it.Node()
				if el.Kind == unstable.InlineTable || el.Kind == unstable.Array {
					addValue(append(append([]string(nil), path...), Elem), el)
				}
			}
		}
	}

	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table:
			table = addKey(nil, e.Key())
		case unstable.ArrayTable:
			table = append(addKey(nil, e.Key()), Elem)
		case unstable.KeyValue:
			addValue(addKey(table, e.Key()), e.Value())
		}
	}
	if err := p.Error(); err != nil {
		return nil, err
	}
	return idx, nil
}

func lineStarts(data []byte) []int {
	starts := []int{0}
	for i, b := range data {
		if b == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// Keys returns every key in document order. The slice is the index's own.
func (idx *Index) Keys() []Key { return idx.keys }

// Pos returns where the key was written, or where its nearest written
// ancestor was, so a missing required key is reported at its section. key
// is spelled as DisplayKey spells it, optionally with [i] element indexes
// ("sources[1].binaries[0].sha256"), which is how validation names fields.
// It returns the zero Position when no part of the key was written.
func (idx *Index) Pos(key string) Position {
	key = indexRE.ReplaceAllString(key, "")
	for key != "" {
		if p, ok := idx.first[key]; ok {
			return p
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return Position{}
}

var indexRE = regexp.MustCompile(`\[[0-9]*\]`)

// KeyAt returns the full path of the key written at pos. go-toml reports
// some decode errors with a key relative to its table; the position finds
// the whole key.
func (idx *Index) KeyAt(pos Position) ([]string, bool) {
	for _, k := range idx.keys {
		if k.Pos == pos {
			return k.Path, true
		}
	}
	return nil, false
}

var bareKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// DisplayKey joins key parts the way TOML writes them, quoting parts that
// are not bare keys so a message is unambiguous. Elem parts are dropped:
// messages point at the array's key.
func DisplayKey(path []string) string {
	q := make([]string, 0, len(path))
	for _, s := range path {
		switch {
		case s == Elem:
		case bareKeyRE.MatchString(s):
			q = append(q, s)
		default:
			q = append(q, strconv.Quote(s))
		}
	}
	return strings.Join(q, ".")
}
