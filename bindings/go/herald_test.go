package herald

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestVersion(t *testing.T) {
	if v := Version(); v == "" {
		t.Fatal("Version() is empty")
	}
}

func TestStartPortAndHTTP(t *testing.T) {
	srv := startServer(t, Config{})
	for _, path := range []string{"/healthz", "/api/ws/stats"} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", srv.Port(), path))
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d %s, want 200", path, resp.StatusCode, body)
		}
	}
}

func TestStartExplicitPort(t *testing.T) {
	// Find a port that is free right now, then ask Herald for it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv, err := Start(Config{Port: Int(port), Path: "/ws", Host: "127.0.0.1"})
	if err != nil {
		t.Skipf("port %d was taken again before Start: %v", port, err)
	}
	defer srv.Close(context.Background())
	if srv.Port() != port {
		t.Errorf("Port() = %d, want %d", srv.Port(), port)
	}
	dial(t, srv, nil)
}

func TestStartPortInUse(t *testing.T) {
	srv := startServer(t, Config{})
	other, err := Start(Config{Port: Int(srv.Port())})
	if err == nil {
		other.Close(context.Background())
		t.Fatal("second Start on the same port succeeded")
	}
	mustIs(t, "Start on a busy port", err, ErrIO)
	var herr *Error
	if !errors.As(err, &herr) || herr.Op != "start" || herr.Message == "" {
		t.Errorf("error = %#v, want *Error with Op start and the core's message", err)
	}
}

func TestStartInvalidConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"port out of range":    {Port: Int(70000)},
		"negative port":        {Port: Int(-1)},
		"path without slash":   {Path: "ws"},
		"host not an address":  {Host: "not a host"},
		"timeout < interval":   {HeartbeatIntervalMS: 10, HeartbeatTimeoutMS: 5},
		"negative history ttl": {History: &HistoryConfig{Size: Int(3), TTLMS: -1}},
	} {
		t.Run(name, func(t *testing.T) {
			srv, err := Start(cfg)
			if err == nil {
				srv.Close(context.Background())
				t.Fatal("Start succeeded")
			}
			mustIs(t, "Start", err, ErrInvalidConfig)
		})
	}
}

func TestConfigJSON(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{}, `{}`},
		{Config{EventBuffer: 9}, `{}`},
		{Config{Port: Int(0)}, `{"port":0}`},
		{Config{Host: "0.0.0.0", Port: Int(80), HeartbeatIntervalMS: 5, History: &HistoryConfig{Size: Int(3), TTLMS: 4, MaxBytes: 5}},
			`{"host":"0.0.0.0","port":80,"heartbeat_interval_ms":5,"history":{"size":3,"ttl_ms":4,"max_bytes":5}}`},
		{Config{History: &HistoryConfig{Size: Int(0)}}, `{"history":{"size":0}}`},
		{Config{AdminToken: "t", ClientQueueBytes: 1, SocketSendBuffer: Int(2), MaxMemory: 3, EventQueueBytes: 4},
			`{"admin_token":"t","client_queue_bytes":1,"socket_send_buffer":2,"max_memory":3,"event_queue_bytes":4}`},
		{Config{SocketSendBuffer: Int(0)}, `{"socket_send_buffer":0}`},
	}
	for _, c := range cases {
		got, err := c.cfg.configJSON()
		if err != nil || string(got) != c.want {
			t.Errorf("configJSON(%+v) = %s, %v; want %s", c.cfg, got, err, c.want)
		}
	}
}

func TestConfigAllFieldsAccepted(t *testing.T) {
	// Every key the binding can send must be known to the core (it rejects
	// unknown keys).
	srv := startServer(t, Config{
		Host: "127.0.0.1", Path: "/ws", HeartbeatIntervalMS: 30000, HeartbeatTimeoutMS: 60000,
		MaxMessageSize: 65536, ClientQueueSize: 1024, MaxConnections: 100, WorkerThreads: 2,
		PublishQueueSize: 1024, EventQueueSize: 1024, HandshakeTimeoutMS: 10000, MaxChannels: 1000, StatsClientLimit: 10,
		History:          &HistoryConfig{Size: Int(10), TTLMS: 60000, MaxBytes: 1 << 20},
		ClientQueueBytes: 1 << 20, SocketSendBuffer: Int(1 << 16), MaxMemory: 1 << 28, EventQueueBytes: 1 << 22,
		AdminToken: "admin-token-for-the-tests",
	})
	dial(t, srv, nil)
}

// TestChannelLimit: a publication that would need a new channel while the
// server holds MaxChannels of them fails with ErrLimit instead of being
// dropped silently; channels that exist still take publications.
func TestChannelLimit(t *testing.T) {
	// History is on by default, so the first session's channel outlives its
	// publication.
	srv := startServer(t, Config{MaxChannels: 1})
	if err := srv.NotifyAIStart("a", map[string]any{"step": 1}); err != nil {
		t.Fatal(err)
	}
	waitStats(t, srv, "one channel", func(s Stats) bool { return s.Channels == 1 })
	for name, call := range map[string]func() error{
		"NotifyAIStart":    func() error { return srv.NotifyAIStart("b", map[string]any{"step": 1}) },
		"NotifyAIProgress": func() error { return srv.NotifyAIProgress("b", map[string]any{"percent": 1}) },
		"Publish":          func() error { return srv.Publish("news", map[string]any{"type": "x"}) },
		"BroadcastToUser":  func() error { return srv.BroadcastToUser("u", map[string]any{"type": "x"}) },
	} {
		err := call()
		mustIs(t, name, err, ErrLimit)
		var herr *Error
		if !errors.As(err, &herr) || herr.Status != StatusLimit || herr.Message == "" {
			t.Errorf("%s: %#v", name, herr)
		}
	}
	if err := srv.NotifyAIProgress("a", map[string]any{"percent": 50}); err != nil {
		t.Fatalf("the existing channel refused a publication: %v", err)
	}
	if err := srv.Publish("session:a", map[string]any{"type": "note"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		hist, err := srv.History("session:a")
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("History(session:a) = %s, want 3 entries", hist)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if hist, err := srv.History("session:b"); err != nil || len(hist) != 0 {
		t.Errorf("History(session:b) = %s, %v; want empty", hist, err)
	}
}

func TestCustomPath(t *testing.T) {
	srv := startServer(t, Config{Path: "/realtime"})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/realtime", srv.Port()), nil)
	if err != nil {
		t.Fatalf("dial custom path: %v", err)
	}
	conn.CloseNow()
}

func TestNotifyAILifecycle(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv, nil)
	c.subscribeSession("job-1")
	other := dial(t, srv, nil)
	other.subscribeSession("job-2")

	type task struct {
		Name  string `json:"name"`
		Steps int    `json:"steps"`
	}
	if err := srv.NotifyAIStart("job-1", task{Name: "summarize", Steps: 2}); err != nil {
		t.Fatal(err)
	}
	if err := srv.NotifyAIProgress("job-1", map[string]any{"pct": 50}); err != nil {
		t.Fatal(err)
	}
	if err := srv.NotifyAIComplete("job-1", json.RawMessage(`{"text":"done"}`)); err != nil {
		t.Fatal(err)
	}
	if err := srv.NotifyAIError("job-1", errors.New("boom")); err != nil {
		t.Fatal(err)
	}
	if err := srv.NotifyAIError("job-1", `{"code":"E42"}`); err != nil {
		t.Fatal(err)
	}
	if err := srv.NotifyAIStart("job-2", []byte(`{"name":"other"}`)); err != nil {
		t.Fatal(err)
	}

	start := c.nextOfType("ai_start")
	progress := c.nextOfType("ai_progress")
	complete := c.nextOfType("ai_complete")
	failed := c.nextOfType("ai_error")
	failed2 := c.nextOfType("ai_error")
	all := []msg{start, progress, complete, failed, failed2}
	for i, m := range all {
		if m.str("sessionId") != "job-1" {
			t.Errorf("%s: sessionId = %q", m.str("type"), m.str("sessionId"))
		}
		if m.str("timestamp") == "" || m.str("epoch") == "" {
			t.Errorf("%s lacks timestamp or epoch: %v", m.str("type"), m)
		}
		if m.str("epoch") != start.str("epoch") {
			t.Errorf("epoch changed within a session: %v vs %v", m, start)
		}
		if i > 0 && !(m.num("seq") > all[i-1].num("seq")) {
			t.Errorf("seq not increasing: %v after %v", m["seq"], all[i-1]["seq"])
		}
	}
	if start.obj("task").str("name") != "summarize" || start.obj("task").num("steps") != 2 {
		t.Errorf("ai_start task = %v", start["task"])
	}
	if progress.obj("progress").num("pct") != 50 {
		t.Errorf("ai_progress progress = %v", progress["progress"])
	}
	if complete.obj("result").str("text") != "done" {
		t.Errorf("ai_complete result = %v", complete["result"])
	}
	if failed.obj("error").str("message") != "boom" {
		t.Errorf("ai_error error = %v, want {message: boom}", failed["error"])
	}
	if failed2.obj("error").str("code") != "E42" {
		t.Errorf("ai_error error = %v, want {code: E42}", failed2["error"])
	}

	m := other.nextOfType("ai_start")
	if m.str("sessionId") != "job-2" || m.obj("task").str("name") != "other" {
		t.Errorf("other session got %v", m)
	}
}

func TestSessionQueryParamSubscribes(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv, url.Values{"sessionId": {"q-1"}})
	// The subscription made from the query parameter must be in place once
	// the client is known to the core; wait for the connected event to be
	// sure the core has registered the client.
	waitEvent(t, srv, "connected", func(ev Event) bool {
		return ev.Type == EventConnected && ev.ClientID == c.clientID
	})
	if err := srv.NotifyAIStart("q-1", map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	m := c.nextOfType("ai_start")
	if m.str("sessionId") != "q-1" {
		t.Errorf("got %v", m)
	}
}

func TestBroadcast(t *testing.T) {
	srv := startServer(t, Config{})
	a := dial(t, srv, nil)
	b := dial(t, srv, nil)
	if err := srv.Broadcast(map[string]any{"type": "announce", "text": "hi"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Broadcast(`{"type":"stamped","timestamp":"2020-01-01T00:00:00.000Z"}`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{a, b} {
		m := c.nextOfType("announce")
		if m.str("text") != "hi" || m.str("timestamp") == "" {
			t.Errorf("broadcast = %v, want text hi and a timestamp", m)
		}
		m = c.nextOfType("stamped")
		if m.str("timestamp") != "2020-01-01T00:00:00.000Z" {
			t.Errorf("broadcast replaced the host's timestamp: %v", m)
		}
	}
}

func TestBroadcastToUser(t *testing.T) {
	srv := startServer(t, Config{})
	alice := dial(t, srv, url.Values{"userId": {"alice"}})
	alice2 := dial(t, srv, url.Values{"userId": {"alice"}})
	bob := dial(t, srv, url.Values{"userId": {"bob"}})
	for _, c := range []*client{alice, alice2, bob} {
		id := c.clientID
		waitEvent(t, srv, "connected "+id, func(ev Event) bool { return ev.Type == EventConnected && ev.ClientID == id })
	}
	if err := srv.BroadcastToUser("alice", map[string]any{"type": "dm", "text": "for alice"}); err != nil {
		t.Fatal(err)
	}
	// A broadcast after the user message: bob's next message must be this
	// marker, proving he did not get alice's message.
	if err := srv.Broadcast(map[string]any{"type": "marker"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{alice, alice2} {
		m := c.nextOfType("dm")
		if m.str("text") != "for alice" || m.str("channel") != "user:alice" {
			t.Errorf("user message = %v, want channel user:alice", m)
		}
		if _, ok := m["seq"]; !ok {
			t.Errorf("user message has no seq: %v", m)
		}
		c.nextOfType("marker")
	}
	bob.nextOfType("marker")
}

func TestPublish(t *testing.T) {
	srv := startServer(t, Config{})
	sub := dial(t, srv, nil)
	sub.subscribe("news")
	bystander := dial(t, srv, nil)
	if err := srv.Publish("news", map[string]any{"type": "headline", "title": "one"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Publish("news", map[string]any{"type": "headline", "title": "two"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Broadcast(map[string]any{"type": "marker"}); err != nil {
		t.Fatal(err)
	}
	one := sub.nextOfType("headline")
	two := sub.nextOfType("headline")
	if one.str("title") != "one" || two.str("title") != "two" {
		t.Errorf("order: %v then %v", one, two)
	}
	for _, m := range []msg{one, two} {
		if m.str("channel") != "news" || m.str("epoch") == "" {
			t.Errorf("published message = %v, want channel news and an epoch", m)
		}
	}
	if !(two.num("seq") > one.num("seq")) {
		t.Errorf("seq not increasing: %v then %v", one["seq"], two["seq"])
	}
	sub.nextOfType("marker")
	bystander.nextOfType("marker")

	// After unsubscribing, publications no longer arrive.
	sub.write(map[string]any{"type": "unsubscribe", "channel": "news"})
	sub.nextOfType("unsubscribed")
	if err := srv.Publish("news", map[string]any{"type": "headline", "title": "three"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Broadcast(map[string]any{"type": "marker"}); err != nil {
		t.Fatal(err)
	}
	sub.nextOfType("marker")
}

func TestSend(t *testing.T) {
	srv := startServer(t, Config{})
	a := dial(t, srv, nil)
	b := dial(t, srv, nil)
	if err := srv.Send(a.clientID, map[string]any{"type": "direct", "n": 1}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Broadcast(map[string]any{"type": "marker"}); err != nil {
		t.Fatal(err)
	}
	if m := a.nextOfType("direct"); m.num("n") != 1 {
		t.Errorf("direct = %v", m)
	}
	a.nextOfType("marker")
	b.nextOfType("marker")

	err := srv.Send("no-such-client", map[string]any{"type": "direct"})
	mustIs(t, "Send to unknown client", err, ErrUnknownClient)
	var herr *Error
	if errors.As(err, &herr) && herr.Status != StatusUnknownClient {
		t.Errorf("Status = %v, want %v", herr.Status, StatusUnknownClient)
	}
}

func TestStats(t *testing.T) {
	srv := startServer(t, Config{})
	a := dial(t, srv, url.Values{"userId": {"u1"}, "sessionId": {"s1"}})
	b := dial(t, srv, nil)
	for _, c := range []*client{a, b} {
		id := c.clientID
		waitEvent(t, srv, "connected "+id, func(ev Event) bool { return ev.Type == EventConnected && ev.ClientID == id })
	}
	a.write(map[string]any{"type": "ping"})
	a.nextOfType("pong")

	st, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.ActiveConnections != 2 || st.TotalConnections < 2 {
		t.Errorf("connections: active %d total %d, want 2 and >= 2", st.ActiveConnections, st.TotalConnections)
	}
	if st.MessagesReceived < 1 || st.MessagesSent < 1 {
		t.Errorf("messages: received %d sent %d, want >= 1 each", st.MessagesReceived, st.MessagesSent)
	}
	if len(st.Raw) == 0 || !json.Valid(st.Raw) {
		t.Errorf("Raw = %q", st.Raw)
	}
	found := false
	for _, cl := range st.Clients {
		if cl.ID == a.clientID {
			found = true
			if cl.UserID != "u1" || cl.SessionID != "s1" || !cl.IsAlive || cl.State != ClientOpen || cl.RemoteAddr == "" {
				t.Errorf("client stats = %+v, want user u1 session s1 alive, open, with an address", cl)
			}
		}
	}
	if !found || len(st.Clients) != 2 {
		t.Errorf("clients = %+v, want 2 including %s", st.Clients, a.clientID)
	}

	// After a disconnect, active connections drop.
	b.conn.Close(websocket.StatusNormalClosure, "")
	waitEvent(t, srv, "disconnected", func(ev Event) bool { return ev.Type == EventDisconnected && ev.ClientID == b.clientID })
	st, err = srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.ActiveConnections != 1 || st.TotalConnections < 2 {
		t.Errorf("after disconnect: active %d total %d", st.ActiveConnections, st.TotalConnections)
	}
}

func TestHistory(t *testing.T) {
	srv := startServer(t, Config{History: &HistoryConfig{Size: Int(10)}})
	for i := 1; i <= 3; i++ {
		if err := srv.Publish("room", map[string]any{"type": "chat", "n": i}); err != nil {
			t.Fatal(err)
		}
	}
	// Publishing only enqueues; a subscriber seeing the third message
	// proves all three were processed.
	c := dial(t, srv, nil)
	c.subscribe("room")
	if err := srv.Publish("room", map[string]any{"type": "chat", "n": 4}); err != nil {
		t.Fatal(err)
	}
	c.nextOfType("chat")

	hist, err := srv.History("room")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 4 {
		t.Fatalf("History(room) has %d messages, want 4: %s", len(hist), hist)
	}
	prevSeq := -1.0
	for i, raw := range hist {
		var m msg
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("history entry %q: %v", raw, err)
		}
		if m.num("n") != float64(i+1) || m.str("channel") != "room" {
			t.Errorf("history[%d] = %v", i, m)
		}
		if !(m.num("seq") > prevSeq) {
			t.Errorf("history seq not increasing at %d: %v", i, m)
		}
		prevSeq = m.num("seq")
	}

	empty, err := srv.History("never-used")
	if err != nil {
		t.Fatalf("History of an unused channel: %v", err)
	}
	if empty == nil || len(empty) != 0 {
		t.Errorf("History of an unused channel = %#v, want empty non-nil slice", empty)
	}
}

func TestHistoryBounded(t *testing.T) {
	srv := startServer(t, Config{History: &HistoryConfig{Size: Int(2)}})
	c := dial(t, srv, nil)
	c.subscribe("small")
	for i := 1; i <= 5; i++ {
		if err := srv.Publish("small", map[string]any{"type": "x", "n": i}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 5; i++ {
		c.nextOfType("x")
	}
	hist, err := srv.History("small")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 {
		t.Fatalf("History with size 2 has %d entries: %s", len(hist), hist)
	}
	var last msg
	json.Unmarshal(hist[1], &last)
	if last.num("n") != 5 {
		t.Errorf("last history entry = %v, want n 5", last)
	}
}

func TestHistoryDisabled(t *testing.T) {
	srv := startServer(t, Config{History: &HistoryConfig{Size: Int(0)}})
	c := dial(t, srv, nil)
	c.subscribe("off")
	if err := srv.Publish("off", map[string]any{"type": "x"}); err != nil {
		t.Fatal(err)
	}
	c.nextOfType("x")
	hist, err := srv.History("off")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 0 {
		t.Errorf("History with history off = %s, want empty", hist)
	}
}

func TestEvents(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv, url.Values{"userId": {"u7"}, "sessionId": {"s7"}})

	ev := waitEvent(t, srv, "connected", func(ev Event) bool { return ev.Type == EventConnected })
	if ev.ClientID != c.clientID || ev.UserID != "u7" || ev.SessionID != "s7" {
		t.Errorf("connected = %+v, want client %s user u7 session s7", ev, c.clientID)
	}
	if ev.RemoteAddr == "" || ev.Timestamp.IsZero() || len(ev.Raw) == 0 {
		t.Errorf("connected lacks remoteAddr, timestamp or raw: %+v", ev)
	}
	if _, _, err := net.SplitHostPort(ev.RemoteAddr); err != nil {
		t.Errorf("remoteAddr %q is not host:port: %v", ev.RemoteAddr, err)
	}

	c.subscribe("alerts")
	ev = waitEvent(t, srv, "subscribed alerts", func(ev Event) bool {
		return ev.Type == EventSubscribed && ev.Channel == "alerts"
	})
	if ev.ClientID != c.clientID {
		t.Errorf("subscribed = %+v", ev)
	}

	c.write(map[string]any{"type": "chat", "text": "hello", "nested": map[string]any{"k": []int{1, 2}}})
	ev = waitEvent(t, srv, "client_message", func(ev Event) bool { return ev.Type == EventClientMessage })
	if ev.ClientID != c.clientID || ev.UserID != "u7" || ev.SessionID != "s7" {
		t.Errorf("client_message = %+v", ev)
	}
	var body msg
	if err := json.Unmarshal(ev.Message, &body); err != nil {
		t.Fatalf("client_message Message %q: %v", ev.Message, err)
	}
	if body.str("type") != "chat" || body.str("text") != "hello" || body.obj("nested") == nil {
		t.Errorf("client_message Message = %s, want the client's whole object", ev.Message)
	}

	c.write(map[string]any{"type": "unsubscribe", "channel": "alerts"})
	c.nextOfType("unsubscribed")
	ev = waitEvent(t, srv, "unsubscribed alerts", func(ev Event) bool {
		return ev.Type == EventUnsubscribed && ev.Channel == "alerts"
	})
	if ev.ClientID != c.clientID {
		t.Errorf("unsubscribed = %+v", ev)
	}

	if err := c.conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Logf("client close: %v", err)
	}
	ev = waitEvent(t, srv, "disconnected", func(ev Event) bool { return ev.Type == EventDisconnected })
	if ev.ClientID != c.clientID || ev.Code != 1000 || ev.Reason != "bye" {
		t.Errorf("disconnected = %+v, want client %s code 1000 reason bye", ev, c.clientID)
	}
}

func TestEventNullFields(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv, nil)
	ev := waitEvent(t, srv, "connected", func(ev Event) bool { return ev.Type == EventConnected })
	if ev.ClientID != c.clientID || ev.UserID != "" || ev.SessionID != "" {
		t.Errorf("connected without ids = %+v", ev)
	}
	// Dropping the TCP connection without a close frame.
	c.conn.CloseNow()
	ev = waitEvent(t, srv, "disconnected", func(ev Event) bool { return ev.Type == EventDisconnected })
	if ev.ClientID != c.clientID {
		t.Errorf("disconnected = %+v", ev)
	}
}

func TestParseEvent(t *testing.T) {
	ev := parseEvent([]byte(`{"type":"disconnected","clientId":"c1","userId":null,"sessionId":null,"code":null,"reason":"","timestamp":"2026-01-01T00:00:00.000Z"}`))
	if ev.Type != EventDisconnected || ev.ClientID != "c1" || ev.UserID != "" || ev.Code != 0 {
		t.Errorf("parseEvent = %+v", ev)
	}
	if !ev.Timestamp.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Timestamp = %v", ev.Timestamp)
	}
	ev = parseEvent([]byte(`{"type":"client_message","clientId":"c2","message":{"type":"x"},"timestamp":"bad"}`))
	if string(ev.Message) != `{"type":"x"}` || !ev.Timestamp.IsZero() {
		t.Errorf("parseEvent = %+v", ev)
	}
	ev = parseEvent([]byte(`{"type":"future","code":"not a number"}`))
	if ev.Type != "future" || len(ev.Raw) == 0 {
		t.Errorf("lenient parse = %+v", ev)
	}
}

func TestClientBadInputKeepsConnection(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv, nil)
	for _, bad := range []string{`not json`, `[1,2]`, `{"no":"type"}`} {
		c.write(bad)
		m := c.nextOfType("error")
		if m.obj("error").str("code") != "invalid_message" {
			t.Errorf("reply to %q = %v, want error code invalid_message", bad, m)
		}
	}
	c.write(map[string]any{"type": "ping"})
	c.nextOfType("pong")
}

func TestBadInput(t *testing.T) {
	srv := startServer(t, Config{})
	type call struct {
		name string
		fn   func() error
		want []error // any of these
	}
	notObject := []error{ErrInvalidJSON, ErrInvalidArgument}
	calls := []call{
		{"syntax error", func() error { return srv.NotifyAIStart("s", `{"a":`) }, []error{ErrInvalidJSON}},
		{"array payload", func() error { return srv.NotifyAIProgress("s", []int{1, 2}) }, notObject},
		{"number payload", func() error { return srv.NotifyAIComplete("s", 42) }, notObject},
		{"nil payload", func() error { return srv.Broadcast(nil) }, notObject},
		{"JSON string payload", func() error { return srv.Publish("c", `"text"`) }, notObject},
		{"empty payload", func() error { return srv.Broadcast("") }, []error{ErrInvalidJSON}},
		{"unencodable payload", func() error { return srv.Broadcast(map[string]any{"ch": make(chan int)}) }, []error{ErrInvalidJSON}},
		{"NUL in payload", func() error { return srv.Broadcast("{\"a\":1}\x00") }, []error{ErrInvalidJSON}},
		{"NUL in session", func() error { return srv.NotifyAIStart("a\x00b", map[string]any{}) }, []error{ErrInvalidArgument}},
		{"NUL in channel", func() error { return srv.Publish("a\x00", map[string]any{}) }, []error{ErrInvalidArgument}},
		{"invalid UTF-8 session", func() error { return srv.NotifyAIStart("\xff\xfe", map[string]any{}) }, []error{ErrInvalidUTF8}},
		{"invalid UTF-8 user", func() error { return srv.BroadcastToUser("\xc3", map[string]any{}) }, []error{ErrInvalidUTF8}},
		{"invalid UTF-8 payload", func() error { return srv.Broadcast([]byte("{\"a\":\"\xff\"}")) }, []error{ErrInvalidUTF8}},
		{"empty session", func() error { return srv.NotifyAIStart("", map[string]any{}) }, []error{ErrInvalidArgument}},
		{"empty channel", func() error { return srv.Publish("", map[string]any{}) }, []error{ErrInvalidArgument}},
		{"empty user", func() error { return srv.BroadcastToUser("", map[string]any{}) }, []error{ErrInvalidArgument}},
		{"empty client", func() error { return srv.Send("", map[string]any{}) }, []error{ErrInvalidArgument, ErrUnknownClient}},
		{"overlong session", func() error { return srv.NotifyAIStart(strings.Repeat("s", 5000), map[string]any{}) }, []error{ErrInvalidArgument}},
		{"history empty channel", func() error { _, err := srv.History(""); return err }, []error{ErrInvalidArgument}},
		{"unknown client", func() error { return srv.Send("nobody", map[string]any{"type": "x"}) }, []error{ErrUnknownClient}},
		{"history NUL", func() error { _, err := srv.History("a\x00"); return err }, []error{ErrInvalidArgument}},
		{"history invalid UTF-8", func() error { _, err := srv.History("\xff"); return err }, []error{ErrInvalidUTF8}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			err := c.fn()
			if err == nil {
				t.Fatalf("no error, want one of %v", c.want)
			}
			ok := false
			for _, w := range c.want {
				ok = ok || errors.Is(err, w)
			}
			if !ok {
				t.Errorf("error = %v, want one of %v", err, c.want)
			}
			var herr *Error
			if !errors.As(err, &herr) || herr.Op == "" || !strings.HasPrefix(err.Error(), "herald: ") {
				t.Errorf("error %q is not a well-formed *Error", err)
			}
		})
	}
	// The JSON encoder's own error stays reachable.
	err := srv.Broadcast(make(chan int))
	var uerr *json.UnsupportedTypeError
	if !errors.As(err, &uerr) {
		t.Errorf("errors.As(%v, *json.UnsupportedTypeError) = false", err)
	}
	// The server still works after all that.
	c := dial(t, srv, nil)
	if err := srv.Send(c.clientID, map[string]any{"type": "ok"}); err != nil {
		t.Fatal(err)
	}
	c.nextOfType("ok")
}

func TestConcurrentNotify(t *testing.T) {
	const goroutines, perGoroutine = 32, 25
	srv := startServer(t, Config{ClientQueueSize: 8192, PublishQueueSize: 8192})
	c := dial(t, srv, nil)
	c.subscribeSession("load")

	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < perGoroutine; i++ {
				for {
					err := srv.NotifyAIProgress("load", map[string]any{"g": g, "i": i})
					if errors.Is(err, ErrQueueFull) {
						time.Sleep(time.Millisecond) // back-pressure: retry
						continue
					}
					if err != nil {
						errs <- fmt.Errorf("goroutine %d message %d: %w", g, i, err)
						return
					}
					break
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	next := make([]int, goroutines) // next expected i per goroutine
	lastSeq := -1.0
	for n := 0; n < goroutines*perGoroutine; n++ {
		m := c.nextOfType("ai_progress")
		p := m.obj("progress")
		g, i := int(p.num("g")), int(p.num("i"))
		if g < 0 || g >= goroutines || i != next[g] {
			t.Fatalf("message %d: got g=%d i=%d, want i=%d for that goroutine (per-caller order)", n, g, i, next[g])
		}
		next[g]++
		if !(m.num("seq") > lastSeq) {
			t.Fatalf("seq not increasing: %v after %v", m["seq"], lastSeq)
		}
		lastSeq = m.num("seq")
	}
}

func TestConcurrentMixedCalls(t *testing.T) {
	srv := startServer(t, Config{History: &HistoryConfig{Size: Int(50)}})
	c := dial(t, srv, url.Values{"userId": {"mix"}})
	c.subscribe("mixed")
	go func() {
		for range srv.Events() {
		}
	}()
	// The client drains in the background so no queue fills up.
	received := make(chan struct{})
	go func() {
		defer close(received)
		for {
			if _, err := c.read(); err != nil {
				return
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				var err error
				switch (g + i) % 8 {
				case 0:
					err = srv.Broadcast(map[string]any{"type": "b", "g": g})
				case 1:
					err = srv.Publish("mixed", map[string]any{"type": "p", "g": g})
				case 2:
					err = srv.BroadcastToUser("mix", map[string]any{"type": "u"})
				case 3:
					err = srv.Send(c.clientID, map[string]any{"type": "s"})
				case 4:
					_, err = srv.Stats()
				case 5:
					_, err = srv.History("mixed")
				case 6:
					err = srv.NotifyAIStart("sess-"+strconv.Itoa(g), map[string]any{"i": i})
				case 7:
					if srv.Port() == 0 {
						err = errors.New("port 0")
					}
				}
				if err != nil && !errors.Is(err, ErrQueueFull) {
					errs <- err
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c.conn.CloseNow()
	<-received
}

func TestCloseTwiceAndCallsAfterClose(t *testing.T) {
	srv, err := Start(Config{Port: Int(0)})
	if err != nil {
		t.Fatal(err)
	}
	port := srv.Port()
	c := dial(t, srv, nil)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	// The client was told the server is going away.
	for {
		_, err := c.read()
		if err == nil {
			continue // messages flushed before the close frame
		}
		if s := websocket.CloseStatus(err); s != websocket.StatusGoingAway {
			t.Errorf("client read after Close: %v (status %d), want close 1001", err, s)
		}
		break
	}

	err = srv.Close(ctx)
	mustIs(t, "second Close", err, ErrClosed)

	// Events is closed (after any buffered events).
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
drain:
	for {
		select {
		case _, ok := <-srv.Events():
			if !ok {
				break drain
			}
		case <-timer.C:
			t.Fatal("Events not closed after Close")
		}
	}

	if srv.Port() != port {
		t.Errorf("Port() after Close = %d, want %d", srv.Port(), port)
	}
	mustIs(t, "NotifyAIStart", srv.NotifyAIStart("s", map[string]any{}), ErrClosed)
	mustIs(t, "NotifyAIProgress", srv.NotifyAIProgress("s", map[string]any{}), ErrClosed)
	mustIs(t, "NotifyAIComplete", srv.NotifyAIComplete("s", map[string]any{}), ErrClosed)
	mustIs(t, "NotifyAIError", srv.NotifyAIError("s", map[string]any{}), ErrClosed)
	mustIs(t, "Broadcast", srv.Broadcast(map[string]any{}), ErrClosed)
	mustIs(t, "BroadcastToUser", srv.BroadcastToUser("u", map[string]any{}), ErrClosed)
	mustIs(t, "Publish", srv.Publish("c", map[string]any{}), ErrClosed)
	mustIs(t, "Send", srv.Send(c.clientID, map[string]any{}), ErrClosed)
	_, err = srv.Stats()
	mustIs(t, "Stats", err, ErrClosed)
	_, err = srv.History("c")
	mustIs(t, "History", err, ErrClosed)

	// The port is free again.
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Errorf("port %d still bound after Close: %v", port, err)
	} else {
		l.Close()
	}
}

func TestCloseConcurrentWithCalls(t *testing.T) {
	srv, err := Start(Config{Port: Int(0)})
	if err != nil {
		t.Fatal(err)
	}
	dial(t, srv, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for {
				var err error
				if g%2 == 0 {
					err = srv.Publish("c", map[string]any{"g": g})
				} else {
					_, err = srv.Stats()
				}
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil && !errors.Is(err, ErrQueueFull) {
					errs <- err
					return
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}(g)
	}
	// Several goroutines race to Close: exactly one wins.
	var closeWG sync.WaitGroup
	results := make(chan error, 4)
	for i := 0; i < 4; i++ {
		closeWG.Add(1)
		go func() {
			defer closeWG.Done()
			results <- srv.Close(context.Background())
		}()
	}
	closeWG.Wait()
	close(results)
	ok := 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrClosed):
		default:
			t.Errorf("Close: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d Close calls succeeded, want exactly 1", ok)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		close(stop)
		t.Fatal("callers did not observe ErrClosed")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCloseWithUndrainedEvents(t *testing.T) {
	srv, err := Start(Config{Port: Int(0), EventBuffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		dial(t, srv, nil)
	}
	// Nobody reads Events: the event goroutine is blocked on a full
	// channel. Close must still return.
	done := make(chan error, 1)
	go func() { done <- srv.Close(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close blocked with undrained events")
	}
}

func TestCloseWithExpiredContext(t *testing.T) {
	srv, err := Start(Config{Port: Int(0)})
	if err != nil {
		t.Fatal(err)
	}
	dial(t, srv, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = srv.Close(ctx)
	if err != nil && !errors.Is(err, ErrTimeout) {
		t.Errorf("Close(cancelled ctx) = %v, want nil or ErrTimeout", err)
	}
	mustIs(t, "Close again", srv.Close(context.Background()), ErrClosed)
	mustIs(t, "Broadcast", srv.Broadcast(map[string]any{}), ErrClosed)
}

func TestNilServer(t *testing.T) {
	var srv *Server
	mustIs(t, "Broadcast", srv.Broadcast(map[string]any{}), ErrClosed)
	mustIs(t, "Close", srv.Close(context.Background()), ErrClosed)
	_, err := srv.Stats()
	mustIs(t, "Stats", err, ErrClosed)
	if srv.Port() != 0 {
		t.Error("Port of nil server")
	}
	if _, ok := <-srv.Events(); ok {
		t.Error("Events of nil server not closed")
	}
}

func TestManyServers(t *testing.T) {
	// Independent servers in one process do not interfere.
	a := startServer(t, Config{})
	b := startServer(t, Config{})
	if a.Port() == b.Port() {
		t.Fatal("two servers on the same port")
	}
	ca := dial(t, a, nil)
	cb := dial(t, b, nil)
	if err := a.Broadcast(map[string]any{"type": "from-a"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Broadcast(map[string]any{"type": "from-b"}); err != nil {
		t.Fatal(err)
	}
	ca.nextOfType("from-a")
	cb.nextOfType("from-b")
	mustIs(t, "Send across servers", a.Send(cb.clientID, map[string]any{"type": "x"}), ErrUnknownClient)
}
