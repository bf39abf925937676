package herald

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// recordingHandler is a slog.Handler that keeps what it receives.
type recordingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

// find returns the first record whose message starts with prefix and contains detail.
func (h *recordingHandler) find(prefix, detail string) (slog.Record, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if strings.HasPrefix(r.Message, prefix) && strings.Contains(r.Message, detail) {
			return r, true
		}
	}
	return slog.Record{}, false
}

func (h *recordingHandler) waitFor(t *testing.T, prefix, detail string) slog.Record {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if r, ok := h.find(prefix, detail); ok {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %q record with %q within %v", prefix, detail, waitTimeout)
	return slog.Record{}
}

func TestCoreLogsReachSlog(t *testing.T) {
	rec := &recordingHandler{}
	if err := RouteLogs(slog.New(rec), slog.LevelDebug); err != nil {
		t.Fatalf("RouteLogs: %v", err)
	}
	t.Cleanup(func() { _ = StopLogs() })
	srv := startServer(t, Config{})
	c := dial(t, srv, map[string][]string{"sessionId": {"slogged"}})
	id := c.clientID
	_ = c.conn.Close(websocket.StatusNormalClosure, "bye")

	r := rec.waitFor(t, "client connected", "client="+id)
	if r.Level != slog.LevelDebug {
		t.Errorf("level = %v, want DEBUG", r.Level)
	}
	var target string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "target" {
			target = a.Value.String()
		}
		return true
	})
	if target != "herald::connection" {
		t.Errorf("target = %q, want herald::connection", target)
	}
	if !strings.Contains(r.Message, "session=slogged") {
		t.Errorf("message = %q", r.Message)
	}
	rec.waitFor(t, "client closed", "client="+id)
}
