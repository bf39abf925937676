package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	herald "github.com/herald-rt/herald/bindings/go"
)

const waitTimeout = 20 * time.Second

type msg map[string]any

func (m msg) str(k string) string { s, _ := m[k].(string); return s }
func (m msg) obj(k string) msg    { o, _ := m[k].(map[string]any); return o }
func (m msg) num(k string) float64 {
	f, _ := m[k].(float64)
	return f
}

// newService starts Herald on a free port, the App around it and an
// httptest server for its handler.
func newService(t *testing.T, opts Options) (*App, *httptest.Server) {
	t.Helper()
	srv, err := herald.Start(herald.Config{Port: herald.Int(0)})
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = log.New(io.Discard, "", 0)
	if testing.Verbose() {
		opts.Logger = log.New(os.Stderr, "app: ", log.Lmicroseconds)
	}
	app := NewApp(srv, opts)
	hs := httptest.NewServer(app.Handler())
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_ = app.Shutdown(ctx) // may already have been shut down by the test
	})
	return app, hs
}

type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
}

func dialWS(t *testing.T, url string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	c := &wsClient{t: t, conn: conn}
	if m := c.next(); m.str("type") != "connection" {
		t.Fatalf("greeting = %v", m)
	}
	return c
}

func (c *wsClient) next() msg {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, data, err := c.conn.Read(ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var m msg
	if err := json.Unmarshal(data, &m); err != nil {
		c.t.Fatalf("frame %q: %v", data, err)
	}
	return m
}

func (c *wsClient) nextOfType(typ string) msg {
	c.t.Helper()
	for {
		m := c.next()
		if m.str("type") == typ {
			return m
		}
		// A session subscribe may begin with the jobs_snapshot of a job under way.
		if m.str("type") != "pong" && m.str("type") != "jobs_snapshot" {
			c.t.Fatalf("got %v while waiting for %q", m, typ)
		}
	}
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsClient) subscribeSession(id string) {
	c.t.Helper()
	c.send(map[string]any{"type": "subscribe", "sessionId": id})
	c.nextOfType("subscribed")
}

func postJob(t *testing.T, base string, body string) (int, jobResponse) {
	t.Helper()
	resp, err := http.Post(base+"/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jr jobResponse
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusAccepted {
		if err := json.Unmarshal(data, &jr); err != nil {
			t.Fatalf("response %q: %v", data, err)
		}
	}
	return resp.StatusCode, jr
}

func TestJobStreamsToSession(t *testing.T) {
	app, hs := newService(t, Options{Steps: 3, StepDelay: time.Millisecond})
	c := dialWS(t, fmt.Sprintf("ws://127.0.0.1:%d/ws", app.srv.Port()))
	c.subscribeSession("sess-a")

	code, jr := postJob(t, hs.URL, `{"sessionId":"sess-a","prompt":"alpha beta"}`)
	if code != http.StatusAccepted || jr.JobID == "" || jr.SessionID != "sess-a" {
		t.Fatalf("POST /jobs = %d %+v", code, jr)
	}
	wantWS := fmt.Sprintf("ws://127.0.0.1:%d/ws?sessionId=sess-a", app.srv.Port())
	if jr.WebSocket != wantWS {
		t.Errorf("websocket URL = %q, want %q", jr.WebSocket, wantWS)
	}

	start := c.nextOfType("ai_start")
	if start.obj("task").str("jobId") != jr.JobID || start.obj("task").str("prompt") != "alpha beta" {
		t.Errorf("ai_start = %v", start)
	}
	for step := 1; step <= 3; step++ {
		p := c.nextOfType("ai_progress").obj("progress")
		if int(p.num("step")) != step || p.str("jobId") != jr.JobID {
			t.Errorf("progress %d = %v", step, p)
		}
	}
	done := c.nextOfType("ai_complete")
	if done.obj("result").str("text") != "alpha beta alpha" || done.str("sessionId") != "sess-a" {
		t.Errorf("ai_complete = %v", done)
	}
}

func TestReturnedWebSocketURLWorks(t *testing.T) {
	// The URL in the response subscribes to the session by itself.
	app, hs := newService(t, Options{Steps: 1, StepDelay: time.Hour})
	code, jr := postJob(t, hs.URL, `{"sessionId":"sess-url","prompt":"x"}`)
	if code != http.StatusAccepted {
		t.Fatalf("POST /jobs = %d", code)
	}
	c := dialWS(t, jr.WebSocket)
	// Cancel through the WebSocket: the job ends with ai_error, which this
	// client receives because it is subscribed through the URL.
	waitForClients(t, app, 1)
	c.send(map[string]any{"type": "cancel_job", "jobId": jr.JobID})
	// The job's ai_start (it starts as the client connects) or the session's
	// jobs_snapshot (it had started) may come first.
	m := c.next()
	for m.str("type") == "pong" || m.str("type") == "ai_start" || m.str("type") == "jobs_snapshot" {
		m = c.next()
	}
	if m.str("type") != "ai_error" {
		t.Fatalf("got %v while waiting for \"ai_error\"", m)
	}
	if m.obj("error").str("message") != "cancelled" || m.obj("error").str("jobId") != jr.JobID {
		t.Errorf("ai_error = %v", m)
	}
}

// waitForClients waits until Herald reports n connected clients.
func waitForClients(t *testing.T, app *App, n uint64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		st, err := app.srv.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.ActiveConnections >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw %d clients", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCancelJobFromClient(t *testing.T) {
	app, hs := newService(t, Options{Steps: 2, StepDelay: time.Hour})
	c := dialWS(t, fmt.Sprintf("ws://127.0.0.1:%d/ws", app.srv.Port()))
	c.subscribeSession("sess-c")
	_, jr := postJob(t, hs.URL, `{"sessionId":"sess-c","prompt":"slow"}`)
	c.nextOfType("ai_start")
	c.send(map[string]any{"type": "cancel_job", "jobId": jr.JobID})
	m := c.nextOfType("ai_error")
	if m.obj("error").str("message") != "cancelled" {
		t.Errorf("ai_error = %v", m)
	}
}

func TestBadRequests(t *testing.T) {
	_, hs := newService(t, Options{})
	for _, body := range []string{``, `not json`, `{}`, `{"sessionId":"   "}`, `[1]`} {
		if code, _ := postJob(t, hs.URL, body); code != http.StatusBadRequest {
			t.Errorf("POST /jobs %q = %d, want 400", body, code)
		}
	}
	resp, err := http.Get(hs.URL + "/jobs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /jobs = %d, want 405", resp.StatusCode)
	}
}

func TestStatsAndHealth(t *testing.T) {
	app, hs := newService(t, Options{})
	dialWS(t, fmt.Sprintf("ws://127.0.0.1:%d/ws", app.srv.Port()))
	waitForClients(t, app, 1)
	resp, err := http.Get(hs.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		ActiveConnections int `json:"activeConnections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != 200 || st.ActiveConnections != 1 {
		t.Errorf("GET /stats = %d %+v %v", resp.StatusCode, st, err)
	}
	resp, err = http.Get(hs.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /healthz = %d", resp.StatusCode)
	}
}

func TestShutdownCancelsJobs(t *testing.T) {
	app, hs := newService(t, Options{Steps: 3, StepDelay: time.Hour})
	c := dialWS(t, fmt.Sprintf("ws://127.0.0.1:%d/ws", app.srv.Port()))
	c.subscribeSession("sess-s")
	for i := 0; i < 3; i++ {
		if code, _ := postJob(t, hs.URL, `{"sessionId":"sess-s","prompt":"p"}`); code != http.StatusAccepted {
			t.Fatalf("POST /jobs = %d", code)
		}
	}
	for i := 0; i < 3; i++ {
		c.nextOfType("ai_start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := app.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Each cancelled job reported ai_error before Herald closed (1001).
	for i := 0; i < 3; i++ {
		c.nextOfType("ai_error")
	}
	if code, _ := postJob(t, hs.URL, `{"sessionId":"sess-s","prompt":"late"}`); code != http.StatusServiceUnavailable {
		t.Errorf("POST /jobs after shutdown = %d, want 503", code)
	}
}

// TestBinary builds the example as a standalone executable (statically
// linked with the core), runs it, drives one job and stops it with SIGINT.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := filepath.Join(t.TempDir(), "herald-jobs")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The static build does not need libherald.so at run time.
	if out, err := exec.Command("ldd", bin).CombinedOutput(); err == nil && bytes.Contains(out, []byte("libherald")) {
		t.Errorf("binary links libherald dynamically:\n%s", out)
	}

	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-herald-port", "0", "-steps", "2", "-step-delay", "1ms")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()

	re := regexp.MustCompile(`listening http=(\S+) herald=(\S+)`)
	var httpAddr, wsURL string
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for httpAddr == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("binary exited before listening")
			}
			if m := re.FindStringSubmatch(l); m != nil {
				httpAddr, wsURL = m[1], m[2]
			}
		case <-timer.C:
			t.Fatal("binary did not report its addresses")
		}
	}
	go func() {
		for range lines {
		}
	}()

	c := dialWS(t, wsURL)
	c.subscribeSession("bin")
	code, _ := postJob(t, "http://"+httpAddr, `{"sessionId":"bin","prompt":"static binary"}`)
	if code != http.StatusAccepted {
		t.Fatalf("POST /jobs = %d", code)
	}
	c.nextOfType("ai_start")
	c.nextOfType("ai_progress")
	c.nextOfType("ai_progress")
	if m := c.nextOfType("ai_complete"); m.obj("result").str("text") != "static binary" {
		t.Errorf("ai_complete = %v", m)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("binary exit: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("binary did not exit after SIGINT")
	}
}
