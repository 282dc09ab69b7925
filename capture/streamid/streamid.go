package streamid

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxLen is the longest id.
const MaxLen = 64

// ErrInvalid is wrapped by every error of Check.
var ErrInvalid = errors.New("invalid stream id")

// Rule says what Check accepts, for error messages and documentation.
const Rule = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit, without \"..\""

// Check returns nil for a valid id, else an error that wraps ErrInvalid
// and quotes the id safely (escaped, cut to 64 bytes).
func Check(id string) error {
	bad := func() error { return fmt.Errorf("%w %s: want %s", ErrInvalid, Quote(id), Rule) }
	if id == "" || len(id) > MaxLen || strings.Contains(id, "..") {
		return bad()
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '_' || c == '.' || c == '-') && i > 0:
		default:
			return bad()
		}
	}
	return nil
}

// Valid reports whether Check accepts id.
func Valid(id string) bool { return Check(id) == nil }

// Quote quotes any string for a message: escaped (non-printable and
// non-ASCII bytes as \x.., so nothing can reorder or break a log line),
// and cut to 64 bytes (at most 258 characters quoted).
func Quote(s string) string {
	cut := ""
	if len(s) > 64 {
		s, cut = s[:64], "…"
	}
	return strconv.QuoteToASCII(s) + cut
}
