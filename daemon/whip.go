package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/affectd/affectd/capture/webrtc"
	"github.com/affectd/affectd/config"
)

// whipServer returns the WebRTC ingest server, making it on first use
// (Run's goroutine only).
func (d *Daemon) whipServer() (*webrtc.Server, error) {
	if w := d.whip.Load(); w != nil {
		return w, nil
	}
	cfg := d.cfg.Load()
	c := cfg.WebRTC
	w, err := webrtc.NewServer(webrtc.Options{
		UDPPort: c.UDPPort, PortMin: uint16(c.PortMin), PortMax: uint16(c.PortMax),
		NAT1To1IPs: c.NAT1To1IPs, ReceiveBuffer: c.ReceiveBuffer, Loopback: c.Loopback,
		Token: cfg.AuthToken, AllowDynamic: c.AllowDynamic, MaxSessions: c.MaxSessions,
		CORSOrigin: c.CORSOrigin, Registerer: d.reg, Dynamic: d.requestDynamic,
		MaxFrameBytes: c.MaxFrameBytes, MaxPixels: c.MaxPixels,
	})
	if err != nil {
		return nil, fmt.Errorf("webrtc: %w", err)
	}
	d.whip.Store(w)
	attrs := []any{"path", "/v1/whip/{stream}", "dynamic", c.AllowDynamic}
	if a := w.UDPAddr(); a != nil {
		attrs = append(attrs, "ice_udp", a.String())
	}
	d.log.Info("WHIP ingest on", attrs...)
	return w, nil
}

// registerWHIP makes the WHIP server, when a whip:// stream or dynamic
// publishing needs it, and registers the configured whip streams' sources
// (startStream takes them from there).
func (d *Daemon) registerWHIP(cfg *config.Config) error {
	need := cfg.WebRTC.AllowDynamic
	for _, sc := range cfg.Streams {
		need = need || sc.Kind() == "whip"
	}
	if !need {
		return nil
	}
	w, err := d.whipServer()
	if err != nil {
		return err
	}
	for _, sc := range cfg.Streams {
		if sc.Kind() != "whip" {
			continue
		}
		src, err := w.Register(sc.ID, sc.Token)
		if err != nil {
			return err
		}
		d.early[sc.ID] = src
	}
	return nil
}

// requestDynamic runs on an HTTP goroutine: Run makes the stream.
func (d *Daemon) requestDynamic(ctx context.Context, stream string) (*webrtc.Source, error) {
	req := dynamicReq{stream, make(chan dynamicReply, 1)}
	select {
	case d.dynamic <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-req.reply:
		return r.src, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// startDynamic makes a stream for a WHIP publisher of an unconfigured id
// (Run's goroutine); it lasts as long as the session.
func (d *Daemon) startDynamic(id string) (*webrtc.Source, error) {
	if !d.ready.Load() {
		return nil, errors.New("not ready")
	}
	d.mu.Lock()
	_, exists := d.streams[id]
	d.mu.Unlock()
	if exists {
		return nil, errors.New("a configured stream has this id")
	}
	w := d.whip.Load()
	src, err := w.NewDynamicSource(id)
	if err != nil {
		return nil, err
	}
	p, err := d.newPipeline(d.cfg.Load(), config.Stream{ID: id, URL: "whip://"}, src, d.models.Load())
	if err != nil {
		w.Unregister(id)
		return nil, err
	}
	p.dynamic = true
	d.run(p)
	d.log.Info("dynamic stream started", "stream", id)
	return src, nil
}
