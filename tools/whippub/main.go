package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/affectd/affectd/tools/whippub/whip"
)

func main() {
	var o whip.Options
	flag.StringVar(&o.URL, "url", "", "WHIP endpoint URL, e.g. http://127.0.0.1:8686/v1/whip/cam1 (required)")
	flag.StringVar(&o.File, "file", "", "media file: .h264/.264 (Annex-B H.264) or .ivf (VP8) (required)")
	flag.StringVar(&o.Token, "token", "", "bearer token")
	flag.Float64Var(&o.FPS, "fps", 0, "frames per second (default: the IVF header's rate, else 25)")
	flag.BoolVar(&o.Loop, "loop", false, "repeat the file until interrupted")
	flag.IntVar(&o.Frames, "n", 0, "stop after this many frames (0: the whole file, or forever with -loop)")
	flag.BoolVar(&o.Loopback, "loopback", false, "ICE on 127.0.0.1 only")
	flag.BoolVar(&o.NoMarker, "no-marker", false, "hostile: never set the RTP marker bit, one timestamp (frames never end; for testing receivers)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: whippub -url URL -file FILE [-token T] [-fps 25] [-loop] [-n frames] [-loopback] [-no-marker]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if o.URL == "" || o.File == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := whip.Publish(ctx, o)
	if st.Sent > 0 || err == nil {
		fmt.Printf("whippub: sent %d frames (%d key frames, %d PLIs) in %.1fs to %s\n",
			st.Sent, st.Keyframes, st.PLIs, st.Duration.Seconds(), o.URL)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "whippub: %s\n", strings.TrimPrefix(err.Error(), "whip: "))
		stop()
		os.Exit(1)
	}
}
