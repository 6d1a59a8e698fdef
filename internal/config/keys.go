package config

import (
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// position is a 1-based line and column in the config text.
type position struct {
	Line, Col int
}

// keyEntry is one key as written in the file, with where it was written.
// Path segments "[]" stand for "an element of this array".
type keyEntry struct {
	path []string
	pos  position
}

// keyIndex lists every key the document defines, in document order, with
// its position. go-toml's decoder does not expose positions of decoded
// values, and it matches struct fields case-insensitively; walking the
// document ourselves gives exact-spelling checks and a line for every
// later message (a missing variable, a failed validation).
type keyIndex struct {
	entries []keyEntry
	first   map[string]position // by lookupKey(path)
}

// indexKeys parses data, which must already be valid TOML.
func indexKeys(data []byte) *keyIndex {
	idx := &keyIndex{first: map[string]position{}}
	lines := lineStarts(data)
	posOf := func(n *unstable.Node) position {
		off := int(n.Raw.Offset)
		i := sort.Search(len(lines), func(i int) bool { return lines[i] > off }) - 1
		if i < 0 {
			i = 0
		}
		return position{Line: i + 1, Col: off - lines[i] + 1}
	}
	add := func(path []string, pos position) {
		p := append([]string(nil), path...)
		idx.entries = append(idx.entries, keyEntry{path: p, pos: pos})
		k := lookupKey(p)
		if _, ok := idx.first[k]; !ok {
			idx.first[k] = pos
		}
	}
	// addKey records every prefix of a dotted key, each at its own part,
	// and returns the full path.
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
			it := v.Children()
			for it.Next() {
				kv := it.Node()
				if kv.Kind != unstable.KeyValue {
					continue
				}
				addValue(addKey(path, kv.Key()), kv.Value())
			}
		case unstable.Array:
			it := v.Children()
			for it.Next() {
				el := it.Node()
				if el.Kind == unstable.InlineTable || el.Kind == unstable.Array {
					addValue(append(append([]string(nil), path...), "[]"), el)
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
			table = append(addKey(nil, e.Key()), "[]")
		case unstable.KeyValue:
			addValue(addKey(table, e.Key()), e.Value())
		}
	}
	return idx
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

// pos returns where the key path (as the walker spells it, with [i] for
// elements) was written, or where its nearest written ancestor was: a
// missing required key is reported at its section.
func (idx *keyIndex) pos(path string) position {
	path = indexRE.ReplaceAllString(path, "")
	for path != "" {
		if p, ok := idx.first[path]; ok {
			return p
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return position{}
}

var indexRE = regexp.MustCompile(`\[[0-9]*\]`)

// lookupKey joins a path for the position map: array markers dropped, since
// messages point at the array's key.
func lookupKey(path []string) string {
	var parts []string
	for _, s := range path {
		if s != "[]" {
			parts = append(parts, s)
		}
	}
	return displayKey(parts)
}

var bareKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// displayKey joins key parts the way TOML writes them, quoting parts that
// are not bare keys so a message is unambiguous.
func displayKey(parts []string) string {
	q := make([]string, len(parts))
	for i, s := range parts {
		if bareKeyRE.MatchString(s) {
			q[i] = s
		} else {
			q[i] = strconv.Quote(s)
		}
	}
	return strings.Join(q, ".")
}
