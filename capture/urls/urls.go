package urls

import (
	"net/url"
	"strings"
)

// Redacted is what replaces a secret.
const Redacted = "REDACTED"

// secretParams are query parameters that carry credentials in cameras'
// and services' URLs (compared case-insensitively).
var secretParams = []string{
	"token", "access_token", "auth", "authorization", "key", "apikey", "api_key",
	"password", "pass", "passwd", "pwd", "secret", "sig", "signature", "credential", "credentials",
}

func secret(name string) bool {
	n := strings.ToLower(name)
	for _, s := range secretParams {
		if n == s {
			return true
		}
	}
	return strings.Contains(n, "token") || strings.Contains(n, "secret") || strings.Contains(n, "password")
}

// Show returns raw without credentials: no user information at all, and
// the value of every secret-looking query parameter replaced. A URL that
// does not parse is shown as its scheme alone (it may hold anything).
func Show(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.Index(raw, "://"); i > 0 && i < 16 {
			return raw[:i+3] + Redacted
		}
		return Redacted
	}
	u.User = nil
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k, vs := range q {
			if secret(k) {
				for i := range vs {
					vs[i] = Redacted
				}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	if u.Fragment != "" && secret(u.Fragment) {
		u.Fragment = Redacted
	}
	return u.String()
}
