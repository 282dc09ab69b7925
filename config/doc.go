// Package config owns affectd's one YAML configuration file: its schema,
// its defaults (all in Default), strict decoding, environment expansion and
// validation.
//
// Parse decodes on top of Default(), so a key left out keeps its default and
// an empty file is a valid configuration. Unknown keys, duplicate keys,
// values of the wrong type, durations without a unit, several YAML documents
// and tabs in indentation are errors. Every problem in a file is reported at
// once, as Errors sorted by line, each formatted as
//
//	file:line: key: message
//
// where key is the setting's path as written in the file, such as
// "batch.queue_limit" or "streams[2].url".
//
// Secrets stay out of the file: auth_token and stream URLs may reference
// ${NAME} environment variables ("$$" is a literal dollar), and
// AFFECTD_AUTH_TOKEN overrides auth_token. Redacted gives a copy fit for
// logs.
//
// Load also makes relative paths absolute against the file's directory.
// StreamsDiff and Stream.Equal tell a reload what changed.
//
// The package starts no goroutines and keeps no global state; it reads the
// environment only in Parse and Load and the file system only in Load. A
// Config is plain data: once Parse returns it, any number of goroutines may
// read it (and call Validate, Redacted, Kind, Equal) concurrently; writing it
// needs the caller's own synchronisation. Only daemon/ imports this
// package, and it imports nothing else from affectd.
package config
