package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Parse reads a configuration from data; name (usually the file's path)
// prefixes every error. It decodes strictly on top of Default(): unknown
// keys, duplicate keys and values of the wrong type are errors. A null value
// ("key:" with nothing after it) keeps the default. It then expands ${NAME}
// references in auth_token and stream URLs ("$$" is a literal "$"), applies
// AFFECTD_AUTH_TOKEN, fills in batch.queue_limit when 0, and validates.
//
// It returns the configuration, or Errors listing every problem found.
func Parse(data []byte, name string) (*Config, error) {
	root, perr := parseYAML(data, name)
	if perr != nil {
		return nil, Errors{perr}
	}
	c := Default()
	d := &decoder{file: name, lines: map[string]int{}, bad: map[string]bool{}}
	if root != nil {
		d.top(root, &c)
	}
	c.src = &source{file: name, lines: d.lines}
	p := &problems{src: c.src, errs: d.errs, bad: d.bad}
	if d.full {
		return nil, p.err() // what was decoded is partial: checking it is noise
	}
	c.applyEnv(p)
	for i := range c.Outputs {
		c.Outputs[i].defaults(i)
	}
	if c.Batch.QueueLimit == 0 && c.Batch.MaxBatch >= 1 && c.Batch.MaxBatch <= maxMaxBatch {
		c.Batch.QueueLimit = 4 * c.Batch.MaxBatch
	}
	c.validate(p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return &c, nil
}

var yamlLineRE = regexp.MustCompile(`^line ([0-9]+): `)

// parseYAML parses the one YAML document in data. It returns its top node,
// nil for an empty document, or the syntax error.
func parseYAML(data []byte, name string) (root *yaml.Node, e *Error) {
	defer func() {
		if r := recover(); r != nil { // yaml.v3 has panicked on odd input before
			root, e = nil, &Error{File: name, Msg: fmt.Sprintf("cannot parse YAML: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // empty, or only comments
		}
		return nil, syntaxError(data, name, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(data, name, err)
	default:
		return nil, &Error{File: name, Line: next.Line, Msg: "a second YAML document starts here; want one"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// parserProblems are the messages of yaml.v3's parser (not scanner) errors.
// It names the line where the construct that failed began.
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// syntaxError turns a yaml.v3 parse error into an Error with the line it
// names. yaml.v3 leaves out "line 1", is sometimes a line early, and says
// little about tabs, so tabs in indentation are reported by themselves.
func syntaxError(data []byte, name string, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
		if parserProblems[msg] {
			line++ // yaml.v3 counts the parser's lines from 0, the scanner's from 1
		}
	} else if l := badCharLine(data); l > 0 {
		line = l // reader errors (control characters, bad UTF-8) carry no line
	}
	if l := tabLine(data); l > 0 && l <= line+1 {
		return &Error{File: name, Line: l, Msg: "tab in indentation (YAML indents with spaces only)"}
	}
	return &Error{File: name, Line: line, Msg: msg}
}

// tabLine is the first line whose indentation holds a tab, or 0.
func tabLine(data []byte) int {
	for i, l := range bytes.Split(data, []byte("\n")) {
		rest := bytes.TrimLeft(l, " \t")
		if len(rest) > 0 && bytes.IndexByte(l[:len(l)-len(rest)], '\t') >= 0 {
			return i + 1
		}
	}
	return 0
}

// badCharLine is the first line holding a character YAML does not allow
// (a control character, invalid UTF-8), or 0.
func badCharLine(data []byte) int {
	line := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return line
		case r == '\n':
			line++
		case r == '\t' || r == '\r' || r == 0x85:
		case r < 0x20 || (r >= 0x7f && r < 0xa0) || r == 0xfffe || r == 0xffff:
			return line
		case r == 0xfeff && i != 0:
			return line
		}
		i += size
	}
	return 0
}

// Limits that keep a hostile or broken file (aliases of aliases, merge keys
// that merge themselves) from costing more than a large real one.
const (
	maxValues     = 100000 // values decoded, aliases counted each time used
	maxMergeDepth = 8
)

// decoder walks a YAML node tree onto Config by the yaml tags of its
// fields, so that it can report every problem with its line and key.
type decoder struct {
	file  string
	lines map[string]int
	bad   map[string]bool
	errs  Errors
	work  int
	full  bool // work passed maxValues: decoding stopped
	// merging holds the mappings whose entries are being listed, so that a
	// merge of one of them (a cycle) is caught.
	merging map[*yaml.Node]bool
}

func (d *decoder) fail(line int, key, format string, args ...any) {
	if key != "" {
		d.bad[key] = true
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// spend counts n values decoded against maxValues, and reports false (and,
// the first time, an error) once the budget is spent.
func (d *decoder) spend(n, line int) bool {
	if d.full {
		return false
	}
	if d.work += n; d.work > maxValues {
		d.full = true
		d.fail(line, "", "document too complex: more than %d values (counting each use of an alias or merge)", maxValues)
		return false
	}
	return true
}

func (d *decoder) top(n *yaml.Node, c *Config) {
	line := n.Line
	n = resolve(n)
	if n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(line, "", "want a mapping of settings at the top level, got %s", describe(n))
		return
	}
	d.mapping(n, reflect.ValueOf(c).Elem(), "")
}

// value decodes n into v. The caller has recorded key's line.
func (d *decoder) value(n *yaml.Node, v reflect.Value, key string) {
	if !d.spend(1, n.Line) {
		return
	}
	line := n.Line
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		if l, ok := d.lines[key]; ok {
			line = l // a block's own line is that of its first entry: name the key's
		}
	}
	if n = resolve(n); n == nil {
		d.fail(line, key, "unresolved alias")
		return
	}
	if n.Kind == yaml.ScalarNode {
		d.lines[key] = line
	}
	if isNull(n) {
		return // keep the default
	}
	if s, ok := v.Addr().Interface().(interface{ shorthand(string) }); ok && n.Kind == yaml.ScalarNode {
		s.shorthand(n.Value) // a section given by one word (identity: global)
		return
	}
	if u, ok := v.Addr().Interface().(yaml.Unmarshaler); ok {
		if err := u.UnmarshalYAML(n); err != nil {
			d.fail(line, key, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(line, key, "want a mapping, got %s", describe(n))
			return
		}
		d.mapping(n, v, key)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(line, key, "want a list, got %s", describe(n))
			return
		}
		if len(n.Content) == 0 {
			v.SetZero()
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ik := key + "[" + strconv.Itoa(i) + "]"
			d.lines[ik] = item.Line
			d.value(item, s.Index(i), ik)
		}
		v.Set(s)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.value(n, p.Elem(), key)
		if !d.bad[key] {
			v.Set(p)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(line, key, "want a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.fail(line, key, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.fail(line, key, "want an integer, got %s", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") ||
			n.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(line, key, "want a number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	default:
		d.fail(line, key, "cannot decode into %s", v.Type()) // a schema type this decoder lacks
	}
}

type entry struct {
	k, v *yaml.Node
	name string
}

// mapping decodes the entries of n into the struct v.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, key string) {
	fields := fieldsOf(v.Type())
	for _, e := range d.entries(n, key, 0) {
		path := join(key, e.name)
		i, ok := fields.index[e.name]
		if !ok {
			d.fail(e.k.Line, path, "unknown key (known: %s)", strings.Join(fields.names, ", "))
			continue
		}
		d.lines[path] = e.k.Line
		d.value(e.v, v.Field(i), path)
	}
}

// entries lists a mapping's keys and values, with "<<" merge keys applied
// (keys written in the mapping win over merged ones, and earlier merged
// mappings over later ones) and duplicate keys reported.
func (d *decoder) entries(n *yaml.Node, key string, depth int) []entry {
	if !d.spend(len(n.Content)/2+1, n.Line) {
		return nil
	}
	if d.merging == nil {
		d.merging = map[*yaml.Node]bool{}
	}
	d.merging[n] = true
	defer delete(d.merging, n)
	var explicit, merged []entry
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.merge(k, v, key, depth)...)
			continue
		}
		kr := resolve(k)
		if kr == nil || kr.Kind != yaml.ScalarNode {
			d.fail(k.Line, key, "keys must be plain strings, got %s", describe(kr))
			continue
		}
		if l, dup := first[kr.Value]; dup {
			d.fail(k.Line, join(key, kr.Value), "duplicate key (first at line %d)", l)
			continue
		}
		first[kr.Value] = k.Line
		explicit = append(explicit, entry{k, v, kr.Value})
	}
	out := make([]entry, 0, len(merged)+len(explicit))
	for _, e := range merged {
		if _, taken := first[e.name]; !taken {
			first[e.name] = e.k.Line
			out = append(out, e)
		}
	}
	return append(out, explicit...)
}

// merge lists the entries a "<<" key brings in: one mapping or a list of them.
func (d *decoder) merge(k, v *yaml.Node, key string, depth int) []entry {
	mk := join(key, "<<")
	if depth >= maxMergeDepth {
		d.fail(k.Line, mk, "merges nested more than %d deep", maxMergeDepth)
		return nil
	}
	var from []*yaml.Node
	switch v = resolve(v); {
	case v != nil && v.Kind == yaml.MappingNode:
		from = []*yaml.Node{v}
	case v != nil && v.Kind == yaml.SequenceNode:
		for _, item := range v.Content {
			if item = resolve(item); item == nil || item.Kind != yaml.MappingNode {
				d.fail(k.Line, mk, "want a mapping or a list of mappings to merge, got a list holding %s", describe(item))
				return nil
			}
			from = append(from, item)
		}
	default:
		d.fail(k.Line, mk, "want a mapping or a list of mappings to merge, got %s", describe(v))
		return nil
	}
	var out []entry
	for _, m := range from {
		if d.merging[m] {
			d.fail(k.Line, mk, "merges a mapping into itself")
			return nil
		}
		out = append(out, d.entries(m, key, depth+1)...)
		if d.full {
			return nil
		}
	}
	return out
}

type fieldSet struct {
	names []string // yaml names, in schema order
	index map[string]int
}

func fieldsOf(t reflect.Type) fieldSet {
	fs := fieldSet{index: map[string]int{}}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		fs.names = append(fs.names, name)
		fs.index[name] = i
	}
	return fs
}

// join appends a key as written to a path, quoting it if it would not
// read back as one key.
func join(path, name string) string {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool {
		return r <= ' ' || r == 0x7f || r == '"' || !strconv.IsPrint(r)
	}) || len(name) > 64 {
		name = quote(name)
	}
	if path == "" {
		return name
	}
	return path + "." + name
}

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i == 16 {
			return nil
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe says what a node is, for "got …" in messages.
func describe(n *yaml.Node) string {
	switch {
	case n == nil:
		return "an alias"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		return "null"
	}
	return quote(n.Value)
}

// quote quotes s for a message, shortened to 40 characters.
func quote(s string) string {
	if utf8.RuneCountInString(s) > 40 {
		s = string([]rune(s)[:40]) + "…"
	}
	return strconv.Quote(s)
}

// applyEnv applies AFFECTD_AUTH_TOKEN and expands ${NAME} in auth_token,
// stream URLs and stream tokens.
func (c *Config) applyEnv(p *problems) {
	if v := os.Getenv(AuthTokenEnv); v != "" {
		c.AuthToken = v
	} else if v, err := expand(c.AuthToken); err != nil {
		p.add("auth_token", "%v", err)
		p.bad["auth_token"] = true
	} else {
		c.AuthToken = v
	}
	for i := range c.Streams {
		for _, f := range []struct {
			name string
			v    *string
		}{{"url", &c.Streams[i].URL}, {"token", &c.Streams[i].Token}} {
			key := "streams[" + strconv.Itoa(i) + "]." + f.name
			if v, err := expand(*f.v); err != nil {
				p.add(key, "%v", err)
				p.bad[key] = true
			} else {
				*f.v = v
			}
		}
	}
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expand replaces ${NAME} with the environment variable NAME, which must be
// set (empty is allowed), and "$$" with "$". Any other "$" stays as it is.
func expand(s string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 || i == len(s)-1 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			s = s[i+2:]
		case '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf(`unterminated "${" (write "$$" for a literal "$")`)
			}
			name := s[i+2 : i+end]
			if !envNameRE.MatchString(name) {
				return "", fmt.Errorf("bad environment variable name %s in ${…}", quote(name))
			}
			v, ok := os.LookupEnv(name)
			if !ok {
				return "", fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(v)
			s = s[i+end+1:]
		default:
			b.WriteByte('$')
			s = s[i+1:]
		}
	}
}
