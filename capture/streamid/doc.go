// Package streamid is the one rule for stream ids, checked wherever an id
// enters: the config file, the HTTP API and WHIP publishing. An id becomes
// part of face ids, metric labels, log lines, file names and URLs, so it
// is kept to a small, printable character set: 1 to 64 ASCII letters,
// digits, '_', '.' and '-', starting with a letter or a digit, and never
// ".." (so no id is a path, a control character, a comma, or text that
// reads right to left). The package is pure Go with no dependencies.
package streamid
