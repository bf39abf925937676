package herald

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

// A token stream from Go: a late subscriber starts from the snapshot and
// continues with no gap; Jobs reads the same state.
func TestTokenStreamAndSnapshot(t *testing.T) {
	srv := startServer(t, Config{})
	words := make([]string, 30)
	for i := range words {
		words[i] = "w" + string(rune('a'+i%26)) + " "
	}
	early := dial(t, srv, url.Values{"sessionId": {"go-s"}})
	if err := srv.NotifyAIStart("go-s", map[string]any{"jobId": "j", "prompt": "write"}); err != nil {
		t.Fatal(err)
	}
	for _, w := range words[:15] {
		if err := srv.NotifyAIDelta("go-s", map[string]any{"jobId": "j", "text": w}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 16; i++ {
		early.next()
	}
	late := dial(t, srv, nil)
	reply := late.subscribeSession("go-s")
	snapshot := late.next()
	if snapshot.str("type") != "jobs_snapshot" || snapshot.num("seq") != reply.num("seq") {
		t.Fatalf("snapshot %v after %v", snapshot, reply)
	}
	job := snapshot["jobs"].([]any)[0].(map[string]any)
	if job["jobId"] != "j" || job["state"] != "running" {
		t.Fatalf("job %v", job)
	}
	text, last := job["text"].(string), snapshot.num("seq")
	for _, w := range words[15:] {
		if err := srv.NotifyAIDelta("go-s", map[string]any{"jobId": "j", "text": w}); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.NotifyAICancelled("go-s", map[string]any{"jobId": "j"}); err != nil {
		t.Fatal(err)
	}
	for {
		m := late.next()
		if m.num("seq") != last+1 {
			t.Fatalf("seq %v after %v", m.num("seq"), last)
		}
		last = m.num("seq")
		if m.str("type") == "ai_cancelled" {
			break
		}
		text += m.obj("delta").str("text")
	}
	if text != strings.Join(words, "") {
		t.Fatalf("text %q", text)
	}
	jobs, err := srv.Jobs("go-s")
	if err != nil {
		t.Fatal(err)
	}
	if jobs.Seq != uint64(last) || len(jobs.Jobs) != 1 || jobs.Jobs[0].State != "cancelled" || jobs.Jobs[0].Text != text {
		t.Fatalf("Jobs = %+v", jobs)
	}
	if err := srv.NotifyAIDelta("go-s", map[string]any{"jobId": "j"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a delta without text: %v", err)
	}
}

// A client's cancel arrives on the Events channel; the host ends the job.
func TestCancelRequestedEvent(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv, url.Values{"sessionId": {"go-c"}, "userId": {"u"}})
	if err := srv.NotifyAIStart("go-c", map[string]any{"jobId": "long"}); err != nil {
		t.Fatal(err)
	}
	c.nextOfType("ai_start")
	c.write(map[string]any{"type": "cancel", "sessionId": "go-c", "jobId": "long"})
	ev := waitEvent(t, srv, "cancel_requested", func(e Event) bool { return e.Type == EventCancelRequested })
	if ev.SessionID != "go-c" || ev.JobID != "long" || ev.UserID != "u" || ev.ClientID != c.clientID {
		t.Fatalf("event %+v", ev)
	}
	if err := srv.NotifyAICancelled(ev.SessionID, map[string]any{"jobId": ev.JobID}); err != nil {
		t.Fatal(err)
	}
	ended := c.nextOfType("ai_cancelled")
	if ended.obj("cancelled").str("jobId") != "long" {
		t.Fatalf("ended %v", ended)
	}
}

// Ended jobs leave the snapshot after jobs.ttl_ms.
func TestJobsExpire(t *testing.T) {
	srv := startServer(t, Config{Jobs: &JobsConfig{TTLMS: 200}})
	if err := srv.NotifyAIStart("go-t", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if err := srv.NotifyAIComplete("go-t", map[string]any{"ok": true}); err != nil {
		t.Fatal(err)
	}
	seen := false
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		jobs, err := srv.Jobs("go-t")
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs.Jobs) == 1 && jobs.Jobs[0].State == "complete" {
			seen = true
		}
		if seen && len(jobs.Jobs) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("never complete then expired (seen complete: %v)", seen)
}
