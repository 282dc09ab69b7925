package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Error is one problem in a configuration: where it is and what is wrong.
//
// Key is the setting's path as the user wrote it: "listen",
// "detector.detect_every", "streams[2].url". It is empty for problems that
// belong to no key (YAML syntax, several documents, a top level that is not a
// mapping). Line is 1-based; 0 means unknown.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

// Error formats the problem as "file:line: key: msg", leaving out the line
// when it is unknown and the key when there is none. Without a file name it
// reads "line N: key: msg".
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration, sorted by line. Parse,
// Load and Validate return it (never empty) as their error, so callers can
// errors.As it to list the problems, or errors.As a single *Error.
type Errors []*Error

// Error puts one problem on each line.
func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the problems, for errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// maxErrors bounds what one Parse reports; a file that is wrong in more
// places than this is better fixed from the top.
const maxErrors = 100

// problems collects the errors of one Parse or Validate.
type problems struct {
	src  *source
	errs Errors
	// bad holds keys that already failed to decode: a later check on the
	// same key (which still holds its default) would only add noise.
	bad map[string]bool
}

// add records a problem with key, located by the source's line table.
func (p *problems) add(key, format string, args ...any) {
	if p.bad[key] {
		return
	}
	e := &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	if p.src != nil {
		e.File = p.src.file
		e.Line = p.src.line(key)
	}
	p.errs = append(p.errs, e)
}

// err returns nil or the problems, sorted by line, duplicates dropped and
// cut at maxErrors.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	out := make(Errors, 0, len(p.errs))
	seen := make(map[Error]bool, len(p.errs))
	for _, e := range p.errs {
		if seen[*e] {
			continue
		}
		seen[*e] = true
		out = append(out, e)
	}
	if len(out) > maxErrors {
		more := len(out) - maxErrors
		out = append(out[:maxErrors:maxErrors], &Error{File: out[0].File, Msg: fmt.Sprintf("… and %d more problems", more)})
	}
	return out
}

// source is where a parsed Config came from, kept so that Validate can name
// lines. It is never changed after Parse.
type source struct {
	file  string
	lines map[string]int // key path as written → line
}

// line finds the line of key, or of the nearest enclosing key that the file
// sets (a default that applies has no line of its own), or 0.
func (s *source) line(key string) int {
	for key != "" {
		if l, ok := s.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}
