package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("wsclient", flag.ContinueOnError)
	addr := fs.String("url", "ws://127.0.0.1:8686/v1/ws", "websocket URL of affectd")
	streams := fs.String("stream", "", "comma-separated stream ids (default: all)")
	n := fs.Int("n", 0, "exit after this many frame messages (0: run until closed)")
	token := fs.String("token", os.Getenv("AFFECTD_AUTH_TOKEN"), "bearer token (default: $AFFECTD_AUTH_TOKEN)")
	types := fs.String("types", "", "message types to print, comma-separated (default: all)")
	timeout := fs.Duration("timeout", 0, "give up when no message arrives for this long (0: never)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	u, err := url.Parse(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsclient: -url:", err)
		return 2
	}
	if *streams != "" {
		q := u.Query()
		q.Set("streams", *streams)
		u.RawQuery = q.Encode()
	}
	hdr := http.Header{}
	if *token != "" {
		hdr.Set("Authorization", "Bearer "+*token)
	}
	conn, resp, err := websocket.DefaultDialer.Dial(u.String(), hdr)
	if err != nil {
		if resp != nil {
			fmt.Fprintf(os.Stderr, "wsclient: %s: %s\n", u.Redacted(), resp.Status)
		} else {
			fmt.Fprintf(os.Stderr, "wsclient: %s: %v\n", u.Redacted(), err)
		}
		return 1
	}
	defer conn.Close()
	want := map[string]bool{}
	for _, t := range strings.Split(*types, ",") {
		if t = strings.TrimSpace(t); t != "" {
			want[t] = true
		}
	}
	frames := 0
	var head struct {
		Type string `json:"type"`
	}
	for {
		if *timeout > 0 {
			conn.SetReadDeadline(time.Now().Add(*timeout))
		}
		_, msg, err := conn.ReadMessage()
		if err != nil {
			if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
				fmt.Fprintln(os.Stderr, "wsclient: server closed the connection:", err)
				return 0
			}
			fmt.Fprintln(os.Stderr, "wsclient:", err)
			return 1
		}
		if err := json.Unmarshal(msg, &head); err != nil {
			fmt.Fprintf(os.Stderr, "wsclient: not JSON: %q\n", msg)
			continue
		}
		if len(want) == 0 || want[head.Type] {
			os.Stdout.Write(bytes.TrimSpace(msg))
			os.Stdout.Write([]byte{'\n'})
		}
		if head.Type == "frame" {
			frames++
			if *n > 0 && frames >= *n {
				conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				return 0
			}
		}
	}
}
