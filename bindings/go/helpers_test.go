package herald

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// waitTimeout bounds every wait in the tests. It is generous on purpose: the
// tests assert what happens, never how fast.
const waitTimeout = 20 * time.Second

// startServer starts a server on a free port and closes it when the test ends.
func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Port == nil {
		cfg.Port = Int(0)
	}
	srv, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if srv.Port() <= 0 {
		t.Fatalf("Port() = %d, want > 0", srv.Port())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := srv.Close(ctx); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return srv
}

// msg is one decoded frame received by a test client.
type msg map[string]any

func (m msg) str(key string) string {
	s, _ := m[key].(string)
	return s
}

func (m msg) obj(key string) msg {
	o, _ := m[key].(map[string]any)
	return msg(o)
}

func (m msg) num(key string) float64 {
	f, _ := m[key].(float64)
	return f
}

// client is a real WebSocket client (github.com/coder/websocket).
type client struct {
	t        testing.TB
	conn     *websocket.Conn
	clientID string
}

// dial connects to srv with the given query parameters and consumes the
// {"type":"connection"} greeting.
func dial(t testing.TB, srv *Server, query url.Values) *client {
	t.Helper()
	return dialURL(t, wsURL("ws", srv, query), nil)
}

// wsURL returns the server's WebSocket URL with the given scheme (ws or
// wss) and query parameters.
func wsURL(scheme string, srv *Server, query url.Values) string {
	u := fmt.Sprintf("%s://127.0.0.1:%d/ws", scheme, srv.Port())
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	return u
}

// dialURL connects to u with opts (may be nil) and consumes the
// {"type":"connection"} greeting.
func dialURL(t testing.TB, u string, opts *websocket.DialOptions) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	conn.SetReadLimit(1 << 20)
	c := &client{t: t, conn: conn}
	t.Cleanup(func() { _ = conn.CloseNow() })
	hello := c.next()
	if hello.str("type") != "connection" || hello.str("status") != "connected" || hello.str("clientId") == "" {
		t.Fatalf("greeting = %v, want a connection/connected message with a clientId", hello)
	}
	if hello.str("timestamp") == "" {
		t.Errorf("greeting has no timestamp: %v", hello)
	}
	c.clientID = hello.str("clientId")
	return c
}

// next reads one JSON text frame.
func (c *client) next() msg {
	c.t.Helper()
	m, err := c.read()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

func (c *client) read() (msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	typ, data, err := c.conn.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		return nil, fmt.Errorf("got a %v frame, want text", typ)
	}
	var m msg
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("frame %q is not a JSON object: %v", data, err)
	}
	return m, nil
}

// nextOfType reads frames until one has the given type, failing if any frame
// of another type (other than "pong") arrives first.
func (c *client) nextOfType(typ string) msg {
	c.t.Helper()
	for {
		m := c.next()
		switch m.str("type") {
		case typ:
			return m
		case "pong":
			continue
		default:
			c.t.Fatalf("got %v while waiting for a %q message", m, typ)
		}
	}
}

// write sends v as a JSON text frame.
func (c *client) write(v any) {
	c.t.Helper()
	data, ok := v.(string)
	if !ok {
		b, err := json.Marshal(v)
		if err != nil {
			c.t.Fatal(err)
		}
		data = string(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(data)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// subscribe subscribes to a channel and waits for the confirmation.
func (c *client) subscribe(channel string) msg {
	c.t.Helper()
	c.write(map[string]any{"type": "subscribe", "channel": channel})
	m := c.nextOfType("subscribed")
	if m.str("channel") != channel {
		c.t.Fatalf("subscribed = %v, want channel %q", m, channel)
	}
	return m
}

// subscribeSession subscribes to a session and waits for the confirmation.
func (c *client) subscribeSession(sessionID string) msg {
	c.t.Helper()
	c.write(map[string]any{"type": "subscribe", "sessionId": sessionID})
	m := c.nextOfType("subscribed")
	if m.str("sessionId") != sessionID {
		c.t.Fatalf("subscribed = %v, want sessionId %q", m, sessionID)
	}
	return m
}

// waitEvent receives events until one matches pred.
func waitEvent(t testing.TB, srv *Server, what string, pred func(Event) bool) Event {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-srv.Events():
			if !ok {
				t.Fatalf("Events closed while waiting for %s", what)
			}
			if pred(ev) {
				return ev
			}
		case <-timer.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// mustIs fails unless errors.Is(err, target).
func mustIs(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error = %v, want errors.Is(_, %v)", what, err, target)
	}
}
