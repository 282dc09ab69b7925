// Command wsclient tails affectd's websocket and prints every message as
// one JSON line on stdout.
//
//	go run ./tools/wsclient [-url ws://127.0.0.1:8686/v1/ws] [-stream a,b] [-n N] [-token T] [-types frame,status]
//
// It exits 0 after -n frame messages (0: never), 1 when the connection
// fails or the server closes it abnormally.
package main
