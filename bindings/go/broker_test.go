package herald

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"testing"
	"time"
)

// redisServer is a redis-server of the test's own: a free loopback port, no
// persistence, SIGKILL at the end.
type redisServer struct {
	port int
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found (%v): the broker tests need it; install it with "+
			"`apt-get install -y redis-server` (tests/run-all.sh does)", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &redisServer{port: port}
	r.cmd = exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no")
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(r.kill)
	deadline := time.Now().Add(waitTimeout)
	for !r.answersPing() {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not answer on port %d within %v", port, waitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

func (r *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d", r.port) }

func (r *redisServer) answersPing() bool {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 16)
	n, _ := conn.Read(buf)
	return string(buf[:n]) == "+PONG\r\n"
}

// kill sends SIGKILL: no goodbye to any client, nothing saved.
func (r *redisServer) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func TestBrokerEmitterReachesNodeClientsInOrderAndFailsOnceRedisIsKilled(t *testing.T) {
	redis := startRedis(t)
	broker := &BrokerConfig{Redis: &RedisConfig{URL: redis.url(), Prefix: "go-emitter:", TimeoutMS: 1000}}
	node := startServer(t, Config{Broker: broker})
	emitter, err := Start(Config{Listen: Bool(false), Broker: broker})
	if err != nil {
		t.Fatalf("Start emitter: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_ = emitter.Close(ctx)
	})
	if emitter.Port() != 0 {
		t.Fatalf("emitter Port() = %d, want 0 (no socket)", emitter.Port())
	}

	session := dial(t, node, url.Values{"sessionId": {"S"}})
	reader := dial(t, node, nil)
	reader.subscribe("news")

	mustOK := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	mustOK("NotifyAIStart", emitter.NotifyAIStart("S", map[string]any{"task": "summarize"}))
	for _, p := range []int{25, 50, 75} {
		mustOK("NotifyAIProgress", emitter.NotifyAIProgress("S", map[string]any{"percent": p}))
	}
	mustOK("NotifyAIComplete", emitter.NotifyAIComplete("S", map[string]any{"summary": "done"}))
	for i := 1; i <= 20; i++ {
		mustOK("Publish", emitter.Publish("news", map[string]any{"type": "note", "i": i}))
	}

	wantTypes := []string{"ai_start", "ai_progress", "ai_progress", "ai_progress", "ai_complete"}
	for i, want := range wantTypes {
		m := session.next()
		if m.str("type") != want || m.num("seq") != float64(i+1) || m.str("sessionId") != "S" {
			t.Fatalf("session message %d = %v, want %s with seq %d", i, m, want, i+1)
		}
		if want == "ai_progress" && m.obj("progress").num("percent") != float64(25*i) {
			t.Fatalf("progress %d = %v, want percent %d", i, m, 25*i)
		}
	}
	for i := 1; i <= 20; i++ {
		m := reader.next()
		if m.str("type") != "note" || m.num("i") != float64(i) || m.num("seq") != float64(i) {
			t.Fatalf("news message %d = %v, want note i=%d seq=%d", i, m, i, i)
		}
	}

	redis.kill()
	// Until the emitter notices, a call may wait for its timeout; either way it fails.
	calls := map[string]func() error{
		"Publish":          func() error { return emitter.Publish("news", map[string]any{"type": "note", "i": 0}) },
		"NotifyAIProgress": func() error { return emitter.NotifyAIProgress("S", map[string]any{"percent": 99}) },
		"Broadcast":        func() error { return emitter.Broadcast(map[string]any{"type": "all"}) },
	}
	failures := 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		for name, call := range calls {
			if err := call(); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%s with Redis killed = %v, want ErrUnavailable", name, err)
			}
			failures++
		}
	}
	if failures < len(calls) {
		t.Fatalf("only %d calls made", failures)
	}
	stats, err := emitter.Stats()
	mustOK("Stats", err)
	if stats.Broker.Kind != "redis" || stats.Broker.Connected {
		t.Fatalf("emitter broker stats = %+v, want redis and not connected with Redis killed", stats.Broker)
	}
}
