package streamid

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		id string
		ok bool
	}{
		{"cam1", true}, {"lobby_2", true}, {"a.b-c", true}, {"A", true}, {"0", true},
		{strings.Repeat("x", 64), true}, {strings.Repeat("x", 65), false},
		{"", false}, {"-cam", false}, {".cam", false}, {"_cam", false},
		{"a..b", false}, {"..", false}, {"a/b", false}, {"a b", false}, {"a,b", false},
		{"a\nb", false}, {"\xff", false}, {"caf\u00e9", false}, {"a\u202eb", false}, {"a%2fb", false},
		{strings.Repeat("x", 10000), false},
	} {
		err := Check(c.id)
		if (err == nil) != c.ok {
			t.Errorf("Check(%s) = %v, want ok %v", Quote(c.id), err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Check(%s): %v does not wrap ErrInvalid", Quote(c.id), err)
		}
		if err != nil && (len(err.Error()) > 300 || strings.ContainsAny(err.Error(), "\n\u202e")) {
			t.Errorf("Check(%s): the message %q is long or unsafe", Quote(c.id), err)
		}
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{"cam1", "a..b", "\xff", strings.Repeat("y", 70), "a\u202eb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := Check(id)
		if err == nil {
			if len(id) == 0 || len(id) > MaxLen || strings.Contains(id, "..") {
				t.Fatalf("accepted %q", id)
			}
			for _, r := range id {
				if r > 127 || r < '-' {
					t.Fatalf("accepted %q with %q", id, r)
				}
			}
		} else if msg := err.Error(); strings.ContainsAny(msg, "\n\r\u202e") || len(msg) > 400 {
			t.Fatalf("unsafe message %q", msg)
		}
	})
}
