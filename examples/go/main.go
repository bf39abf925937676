// Command herald-jobs is an example net/http service that embeds Herald.
//
// POST /jobs starts a simulated AI job that streams its progress over Herald
// to every WebSocket client subscribed to the job's session:
//
//	go run . -addr 127.0.0.1:8080 -herald-port 3001
//	websocat 'ws://127.0.0.1:3001/ws?sessionId=demo'    # in another terminal
//	curl -XPOST localhost:8080/jobs -d '{"sessionId":"demo","prompt":"explain cgo"}'
//
// The WebSocket client sees ai_start, one ai_progress per step and
// ai_complete. It can cancel the job by sending
// {"type":"cancel_job","jobId":"<id>"}, which reaches this service as a Herald
// client_message event and ends the job with ai_error.
//
// Other routes: GET /stats (Herald's connection statistics), GET /healthz.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	herald "github.com/herald-rt/herald/bindings/go"
)

// Options configure the simulated jobs.
type Options struct {
	// Steps is the number of ai_progress messages per job.
	Steps int
	// StepDelay is the simulated work time before each step.
	StepDelay time.Duration
	// Logger receives the service's log lines; nil means log.Default().
	Logger *log.Logger
}

// App is the HTTP service: it owns the running jobs and forwards their
// progress to Herald.
type App struct {
	srv  *herald.Server
	opts Options
	log  *log.Logger

	ctx        context.Context // cancelled by Shutdown; parent of every job
	cancel     context.CancelFunc
	jobsWG     sync.WaitGroup // running jobs
	eventsDone chan struct{}  // closed when the event consumer returns
	nextID     atomic.Uint64

	mu   sync.Mutex
	jobs map[string]context.CancelFunc // running jobs by ID
}

// NewApp creates the service around a started Herald server and starts
// consuming its events.
func NewApp(srv *herald.Server, opts Options) *App {
	if opts.Steps <= 0 {
		opts.Steps = 5
	}
	if opts.Logger == nil {
		opts.Logger = log.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &App{
		srv: srv, opts: opts, log: opts.Logger, ctx: ctx, cancel: cancel,
		eventsDone: make(chan struct{}), jobs: map[string]context.CancelFunc{},
	}
	go a.consumeEvents()
	return a
}

// Handler returns the service's routes.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /jobs", a.handleStartJob)
	mux.HandleFunc("GET /stats", a.handleStats)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	return mux
}

// jobRequest is the body of POST /jobs.
type jobRequest struct {
	SessionID string `json:"sessionId"` // session to stream to (required)
	Prompt    string `json:"prompt"`    // input of the simulated model
}

// jobResponse is the body of a 202 reply to POST /jobs.
type jobResponse struct {
	JobID     string `json:"jobId"`     // ID used by cancel_job
	SessionID string `json:"sessionId"` // the session the job streams to
	WebSocket string `json:"websocket"` // URL subscribing to that session
}

func (a *App) handleStartJob(w http.ResponseWriter, r *http.Request) {
	var req jobRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := dec.Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "body must be a JSON object: "+err.Error())
		return
	}
	if strings.TrimSpace(req.SessionID) == "" {
		httpError(w, http.StatusBadRequest, "sessionId is required")
		return
	}
	id := "job-" + strconv.FormatUint(a.nextID.Add(1), 10)
	if err := a.startJob(id, req); err != nil {
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	}

	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	resp := jobResponse{
		JobID:     id,
		SessionID: req.SessionID,
		WebSocket: fmt.Sprintf("ws://%s/ws?sessionId=%s", net.JoinHostPort(host, strconv.Itoa(a.srv.Port())), url.QueryEscape(req.SessionID)),
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(resp)
}

func (a *App) handleStats(w http.ResponseWriter, _ *http.Request) {
	st, err := a.srv.Stats()
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(st.Raw)
}

// startJob registers a job and runs it in the background.
func (a *App) startJob(id string, req jobRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx.Err() != nil {
		return errors.New("shutting down")
	}
	ctx, cancel := context.WithCancel(a.ctx)
	a.jobs[id] = cancel
	a.jobsWG.Add(1)
	go func() {
		defer a.jobsWG.Done()
		defer func() {
			a.mu.Lock()
			delete(a.jobs, id)
			a.mu.Unlock()
			cancel()
		}()
		if err := a.runJob(ctx, id, req); err != nil {
			a.log.Printf("job %s: %v", id, err)
		}
	}()
	return nil
}

// cancelJob cancels a running job; it reports whether the job existed.
func (a *App) cancelJob(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	cancel, ok := a.jobs[id]
	if ok {
		cancel()
	}
	return ok
}

// runJob simulates an AI task: it "generates" one word of the answer per
// step and streams every step to the session.
func (a *App) runJob(ctx context.Context, id string, req jobRequest) error {
	sid := req.SessionID
	if err := notify(ctx, func() error {
		return a.srv.NotifyAIStart(sid, map[string]any{"jobId": id, "prompt": req.Prompt, "steps": a.opts.Steps})
	}); err != nil {
		return err
	}
	words := strings.Fields(req.Prompt)
	if len(words) == 0 {
		words = []string{"thinking"}
	}
	var answer []string
	for step := 1; step <= a.opts.Steps; step++ {
		select {
		case <-ctx.Done():
			return notify(context.Background(), func() error {
				return a.srv.NotifyAIError(sid, map[string]any{"jobId": id, "message": "cancelled"})
			})
		case <-time.After(a.opts.StepDelay):
		}
		answer = append(answer, words[(step-1)%len(words)])
		if err := notify(ctx, func() error {
			return a.srv.NotifyAIProgress(sid, map[string]any{
				"jobId":   id,
				"step":    step,
				"steps":   a.opts.Steps,
				"percent": step * 100 / a.opts.Steps,
				"partial": strings.Join(answer, " "),
			})
		}); err != nil {
			return err
		}
	}
	return notify(ctx, func() error {
		return a.srv.NotifyAIComplete(sid, map[string]any{"jobId": id, "text": strings.Join(answer, " ")})
	})
}

// notify retries a Herald call while its queue is full.
func notify(ctx context.Context, call func() error) error {
	for {
		err := call()
		if !errors.Is(err, herald.ErrQueueFull) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// consumeEvents logs Herald events and handles cancel_job client messages.
func (a *App) consumeEvents() {
	defer close(a.eventsDone)
	for ev := range a.srv.Events() {
		switch ev.Type {
		case herald.EventClientMessage:
			var m struct {
				Type  string `json:"type"`
				JobID string `json:"jobId"`
			}
			if json.Unmarshal(ev.Message, &m) == nil && m.Type == "cancel_job" {
				found := a.cancelJob(m.JobID)
				a.log.Printf("client %s cancelled %s (running: %v)", ev.ClientID, m.JobID, found)
			}
		case herald.EventConnected:
			a.log.Printf("client %s connected from %s (session %q)", ev.ClientID, ev.RemoteAddr, ev.SessionID)
		case herald.EventDisconnected:
			a.log.Printf("client %s disconnected (code %d)", ev.ClientID, ev.Code)
		}
	}
}

// Shutdown cancels the running jobs (each reports ai_error to its session),
// waits for them, closes the Herald server and waits for the event consumer.
// ctx bounds the wait for the jobs and Herald's graceful shutdown.
func (a *App) Shutdown(ctx context.Context) error {
	a.mu.Lock() // no job starts after this
	a.cancel()
	a.mu.Unlock()
	jobsDone := make(chan struct{})
	go func() {
		a.jobsWG.Wait()
		close(jobsDone)
	}()
	select {
	case <-jobsDone:
	case <-ctx.Done():
	}
	err := a.srv.Close(ctx)
	<-a.eventsDone
	return err
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "HTTP listen address of this service")
	heraldHost := flag.String("herald-host", "127.0.0.1", "interface Herald's WebSocket server binds")
	heraldPort := flag.Int("herald-port", 3001, "port of Herald's WebSocket server (0 = any free port)")
	steps := flag.Int("steps", 5, "progress steps per simulated job")
	stepDelay := flag.Duration("step-delay", 500*time.Millisecond, "simulated work per step")
	flag.Parse()

	srv, err := herald.Start(herald.Config{Host: *heraldHost, Port: herald.Int(*heraldPort)})
	if err != nil {
		log.Fatalf("start herald: %v", err)
	}
	app := NewApp(srv, Options{Steps: *steps, StepDelay: *stepDelay})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		_ = srv.Close(context.Background())
		log.Fatalf("listen: %v", err)
	}
	httpSrv := &http.Server{Handler: app.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Printf("listening http=%s herald=ws://%s/ws (herald %s)",
		ln.Addr(), net.JoinHostPort(*heraldHost, strconv.Itoa(srv.Port())), herald.Version())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		log.Printf("http: %v", err)
	}
	log.Print("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = httpSrv.Shutdown(shutdownCtx)
	if err := app.Shutdown(shutdownCtx); err != nil {
		log.Printf("herald close: %v", err)
		os.Exit(1)
	}
	log.Print("bye")
}
