package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/affectd/affectd/capture/streamid"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// HubOptions configure the websocket hub.
type HubOptions struct {
	// SendQueue is each client's queue, in messages (default 64). When it
	// is full the oldest message is dropped, counted, and the client told.
	SendQueue int
	// MaxDrops disconnects a client that has lost this many messages
	// without catching up once (default 250: ten seconds of a 25 fps stream).
	MaxDrops int
	// PingInterval is the keep-alive period (default 20s); a client that
	// answers no ping for two periods is disconnected.
	PingInterval time.Duration
	// WriteTimeout bounds one write to a client (default 10s).
	WriteTimeout time.Duration
	// SocketBuffer caps each client socket's kernel send buffer (default
	// 256 KiB), so that a slow client's backlog sits in its hub queue,
	// where it is bounded, counted and dropped oldest-first, rather than in
	// megabytes of kernel buffers that only add latency.
	SocketBuffer int
	// MaxClients bounds the connected clients (default 256): another gets
	// 503 with Retry-After, counted in affectd_ws_refused_total.
	MaxClients int
	// Hello returns the encoded hello message for a new connection.
	Hello func() []byte
	// Mirror, when set, also gets every message published here for a
	// stream (status true for status messages), to send it on to the
	// cluster; it must not block. Messages given to Relay are not
	// mirrored.
	Mirror func(stream string, msg []byte, status bool)
	// Registerer receives the hub's metrics (nil: not registered).
	Registerer prometheus.Registerer
}

// Hub fans messages out to websocket clients. Publishing never blocks and
// never waits for a client: each client has its own bounded queue drained
// by its own writer goroutine. All methods are safe for concurrent use.
type Hub struct {
	o        HubOptions
	upgrader websocket.Upgrader
	m        hubMetrics

	mu      sync.RWMutex
	clients map[*client]struct{}
	closed  bool
	active  atomic.Int64 // clients connected or being upgraded
	wg      sync.WaitGroup
}

type hubMetrics struct {
	clients     prometheus.Gauge
	sent        prometheus.Counter
	dropped     prometheus.Counter
	disconnects *prometheus.CounterVec
	refused     *prometheus.CounterVec
}

// NewHub makes a hub.
func NewHub(o HubOptions) (*Hub, error) {
	if o.SendQueue <= 0 {
		o.SendQueue = 64
	}
	if o.MaxDrops <= 0 {
		o.MaxDrops = 250
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 20 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.SocketBuffer <= 0 {
		o.SocketBuffer = 256 << 10
	}
	if o.MaxClients <= 0 {
		o.MaxClients = 256
	}
	h := &Hub{o: o, clients: map[*client]struct{}{}}
	h.upgrader = websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 16 << 10,
		CheckOrigin:     sameOrigin,
	}
	h.m = hubMetrics{
		clients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "affectd_ws_clients", Help: "Connected websocket clients."}),
		sent:    prometheus.NewCounter(prometheus.CounterOpts{Name: "affectd_ws_messages_sent_total", Help: "Messages written to websocket clients."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "affectd_ws_dropped_total", Help: "Messages dropped for websocket clients that read too slowly.",
			ConstLabels: prometheus.Labels{"reason": "slow_client"},
		}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_ws_disconnects_total", Help: "Websocket clients disconnected, by reason.",
		}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_ws_refused_total", Help: "Websocket connections refused, by reason (too_many: websocket.max_clients; bad_request).",
		}, []string{"reason"}),
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{h.m.clients, h.m.sent, h.m.dropped, h.m.disconnects, h.m.refused} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

// sameOrigin accepts clients without an Origin (scripts, tools) and
// browsers on the daemon's own host.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// ServeHTTP upgrades GET /v1/ws?streams=a,b (all streams when omitted).
// Authentication is the caller's (daemon) business.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	subs, err := ParseStreams(r.URL.Query().Get("streams"))
	if err != nil {
		h.m.refused.WithLabelValues("bad_request").Inc()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.RLock()
	closed := h.closed
	h.mu.RUnlock()
	if closed {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if h.active.Add(1) > int64(h.o.MaxClients) {
		h.active.Add(-1)
		h.m.refused.WithLabelValues("too_many").Inc()
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many websocket clients (websocket.max_clients)", http.StatusServiceUnavailable)
		return
	}
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		h.active.Add(-1)
		return // the upgrader has answered
	}
	if tc, ok := conn.NetConn().(*net.TCPConn); ok {
		tc.SetWriteBuffer(h.o.SocketBuffer)
	}
	c := &client{
		h: h, conn: conn, subs: subs,
		queue:  make([][]byte, 0, h.o.SendQueue),
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	if h.o.Hello != nil {
		c.queue = append(c.queue, h.o.Hello())
		c.signal()
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.active.Add(-1)
		conn.Close()
		return
	}
	h.clients[c] = struct{}{}
	h.wg.Add(2)
	h.mu.Unlock()
	h.m.clients.Inc()
	go c.readLoop()
	go c.writeLoop()
}

// Publish sends an encoded message to every client subscribed to stream
// ("" for every client). msg must not be modified afterwards.
func (h *Hub) Publish(stream string, msg []byte) {
	h.Relay(stream, msg)
	if h.o.Mirror != nil && stream != "" {
		h.o.Mirror(stream, msg, false)
	}
}

// Relay sends a message of another node's stream to the local
// subscribers only.
func (h *Hub) Relay(stream string, msg []byte) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.clients {
		if stream == "" || c.subs == nil || c.subs[stream] {
			c.enqueue(msg)
		}
	}
}

// PublishStatus sends a status event to the stream's subscribers.
func (h *Hub) PublishStatus(s Status) {
	s.Type, s.V = "status", Version
	b, err := json.Marshal(s)
	if err == nil {
		h.Relay(s.Stream, b)
		if h.o.Mirror != nil && s.Stream != "" {
			h.o.Mirror(s.Stream, b, true)
		}
	}
}

// Clients is the number of connected clients.
func (h *Hub) Clients() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.clients)
}

// Close sends every client a close frame (going away), waits for their
// goroutines, and refuses new connections. It is safe to call twice.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.wg.Wait()
		return nil
	}
	h.closed = true
	cs := make([]*client, 0, len(h.clients))
	for c := range h.clients {
		cs = append(cs, c)
	}
	h.mu.Unlock()
	for _, c := range cs {
		c.shutdown(websocket.CloseGoingAway, "server shutting down", "shutdown")
	}
	h.wg.Wait()
	return nil
}

func (h *Hub) remove(c *client) {
	h.mu.Lock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		h.m.clients.Dec()
		h.active.Add(-1)
	}
	h.mu.Unlock()
}

type client struct {
	h    *Hub
	conn *websocket.Conn
	subs map[string]bool // nil: every stream

	mu        sync.Mutex
	queue     [][]byte
	dropped   int // since the last notice
	total     int // dropped since connect
	behind    int // dropped since the writer last caught up
	closing   bool
	closeCode int
	closeText string
	closeWhy  string
	notify    chan struct{}
	done      chan struct{}
	doneOnce  sync.Once
}

func (c *client) signal() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *client) enqueue(msg []byte) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= c.h.o.SendQueue {
		copy(c.queue, c.queue[1:])
		c.queue = c.queue[:len(c.queue)-1]
		c.dropped++
		c.total++
		c.behind++
		c.h.m.dropped.Inc()
		if c.behind >= c.h.o.MaxDrops {
			c.mu.Unlock()
			c.shutdown(websocket.ClosePolicyViolation, "too slow: messages dropped", "slow")
			return
		}
	}
	c.queue = append(c.queue, msg)
	c.mu.Unlock()
	c.signal()
}

// shutdown asks the writer to send a close frame and stop. A writer stuck
// on a connection the peer no longer reads gives up within a second.
func (c *client) shutdown(code int, text, why string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing, c.closeCode, c.closeText, c.closeWhy = true, code, text, why
	c.mu.Unlock()
	c.doneOnce.Do(func() { close(c.done) })
	c.conn.NetConn().SetWriteDeadline(time.Now().Add(time.Second))
}

func (c *client) readLoop() {
	defer c.h.wg.Done()
	wait := 2*c.h.o.PingInterval + c.h.o.WriteTimeout
	c.conn.SetReadLimit(4096)
	c.conn.SetReadDeadline(time.Now().Add(wait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(wait))
	})
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			why := "closed"
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				why = "read_error"
			}
			c.shutdown(websocket.CloseNormalClosure, "", why)
			return
		}
		// Clients have nothing to say yet; their messages are ignored.
	}
}

func (c *client) writeLoop() {
	defer c.h.wg.Done()
	defer func() {
		c.conn.Close()
		c.h.remove(c)
		c.mu.Lock()
		why := c.closeWhy
		c.mu.Unlock()
		if why == "" {
			why = "write_error"
		}
		c.h.m.disconnects.WithLabelValues(why).Inc()
	}()
	ping := time.NewTicker(c.h.o.PingInterval)
	defer ping.Stop()
	var batch [][]byte
	for {
		select {
		case <-c.notify:
		case <-ping.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.h.o.WriteTimeout)); err != nil {
				c.shutdown(websocket.CloseNormalClosure, "", "ping_failed")
				return
			}
			continue
		case <-c.done:
			c.mu.Lock()
			code, text := c.closeCode, c.closeText
			c.mu.Unlock()
			c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
			return
		}
		c.mu.Lock()
		batch = append(batch[:0], c.queue...)
		for i := range c.queue {
			c.queue[i] = nil
		}
		c.queue = c.queue[:0]
		dropped, total := c.dropped, c.total
		c.dropped = 0
		c.mu.Unlock()
		if dropped > 0 {
			b, _ := json.Marshal(Dropped{Type: "dropped", V: Version, Count: dropped, Total: total})
			if !c.write(b) {
				return
			}
		}
		for i, msg := range batch {
			batch[i] = nil
			if !c.write(msg) {
				return
			}
		}
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.behind = 0 // caught up
		}
		c.mu.Unlock()
	}
}

func (c *client) write(msg []byte) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.h.o.WriteTimeout))
	if err := c.conn.WriteMessage(websocket.TextMessage, msg); err != nil {
		c.shutdown(websocket.CloseNormalClosure, "", "write_error")
		return false
	}
	c.h.m.sent.Inc()
	return true
}

// MaxSubscriptions bounds the streams one client names in ?streams=.
const MaxSubscriptions = 256

// ParseStreams reads ?streams=a,b: nil (every stream) when empty, else
// the set of ids, each a valid stream id (capture/streamid), at most
// MaxSubscriptions of them.
func ParseStreams(q string) (map[string]bool, error) {
	if q == "" {
		return nil, nil
	}
	subs := map[string]bool{}
	for _, s := range strings.Split(q, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if err := streamid.Check(s); err != nil {
			return nil, fmt.Errorf("streams: %w", err)
		}
		if subs[s] = true; len(subs) > MaxSubscriptions {
			return nil, fmt.Errorf("streams: more than %d", MaxSubscriptions)
		}
	}
	return subs, nil
}
