package herald

/*
#include <stdlib.h>
#include "herald.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

const (
	// DefaultCloseTimeout is the graceful-shutdown budget Close gives the
	// core when its context has no deadline.
	DefaultCloseTimeout = 5 * time.Second
	// defaultEventBuffer is the capacity of the Events channel when
	// Config.EventBuffer is 0.
	defaultEventBuffer = 256
	// eventPollMS is how long one herald_next_event call waits. It bounds
	// how long Close waits for the event goroutine to leave the core.
	eventPollMS = 100
)

// Server is a running Herald server. Create it with Start and release it with
// Close. All methods are safe for concurrent use, and safe to call after
// Close (they return an error wrapping ErrClosed).
type Server struct {
	// mu guards h: every C call holds it for reading, Close holds it for
	// writing while it stops and frees the core handle, so no call can use
	// a freed handle.
	mu sync.RWMutex
	h  *C.herald_server

	port     int
	events   chan Event
	stopping chan struct{} // closed by Close, unblocks the event goroutine
	done     chan struct{} // closed when the event goroutine has exited

	logger *slog.Logger
	// closeCtx is cancelled by Close; the contexts given to the authorizer
	// derive from it.
	closeCtx    context.Context
	closeCancel context.CancelFunc
	// authTimeout is the configured authorizer timeout (the deadline of the
	// authorizer's context).
	authTimeout time.Duration
	// authHandles counts the authorizer handles the core still owns (it
	// hands each back through the drop callback after its last call).
	authHandles atomic.Int32
}

// Version returns the core library's version string.
func Version() string {
	return C.GoString(C.herald_version())
}

// Start starts a server with cfg and returns once it is listening. With
// Config{Port: Int(0)} the core binds any free port; Port reports it.
//
// Start fails with an error wrapping ErrInvalidConfig when the core rejects
// the configuration, or ErrIO when it cannot bind (e.g. port in use): the
// core's status, with its message in Error.Message.
func Start(cfg Config) (*Server, error) {
	js, err := cfg.configJSON()
	if err != nil {
		return nil, goError("start", ErrInvalidConfig, "cannot encode config", err)
	}
	cjs := cString(js)
	ensureLogs(cfg.Logger)

	h, port, st, msg := func() (*C.herald_server, C.uint16_t, Status, string) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var h *C.herald_server
		var port C.uint16_t
		st := Status(C.herald_start(cptr(cjs), &h))
		if st == StatusOK {
			st = Status(C.herald_port(h, &port))
		}
		if st != StatusOK {
			// The message is read on the thread that failed.
			return h, 0, st, C.GoString(C.herald_last_error())
		}
		return h, port, StatusOK, ""
	}()
	runtime.KeepAlive(cjs)
	if st != StatusOK {
		if h != nil {
			C.herald_stop(h, 0)
		}
		return nil, statusError("start", st, msg)
	}

	buf := cfg.EventBuffer
	if buf <= 0 {
		buf = defaultEventBuffer
	}
	authTimeout := DefaultAuthorizerTimeout
	if cfg.Auth != nil && cfg.Auth.AuthorizerTimeoutMS > 0 {
		authTimeout = time.Duration(cfg.Auth.AuthorizerTimeoutMS) * time.Millisecond
	}
	closeCtx, closeCancel := context.WithCancel(context.Background())
	s := &Server{
		h:           h,
		port:        int(port),
		events:      make(chan Event, buf),
		stopping:    make(chan struct{}),
		done:        make(chan struct{}),
		logger:      loggerOrDefault(cfg.Logger),
		closeCtx:    closeCtx,
		closeCancel: closeCancel,
		authTimeout: authTimeout,
	}
	go s.eventLoop()
	return s, nil
}

// Port returns the TCP port the server is bound to (the actual port when
// Config.Port was 0). It keeps returning that port after Close, and 0 for a
// nil *Server.
func (s *Server) Port() int {
	if s == nil {
		return 0
	}
	return s.port
}

// Events returns the channel on which the server delivers its events
// (connections, disconnections, subscriptions, client messages). The channel
// is closed when the server is closed. There is one channel per Server; if
// several goroutines receive from it, each event goes to one of them.
//
// Events are read from the core by one goroutine started by Start. While
// nobody receives and the channel's buffer (Config.EventBuffer) is full,
// that goroutine waits and further events accumulate in the core's bounded
// event queue (Config.EventQueueSize), where the core drops them once it is
// full. Events that the core produces while Close shuts it down (such as the
// disconnection of the remaining clients) are not delivered.
func (s *Server) Events() <-chan Event {
	if s == nil {
		ch := make(chan Event)
		close(ch)
		return ch
	}
	return s.events
}

// NotifyAIStart tells the subscribers of session sessionID that an AI task
// started. task must encode to a JSON object; clients receive
// {"type":"ai_start","sessionId":...,"task":task,...}.
func (s *Server) NotifyAIStart(sessionID string, task any) error {
	return s.notifyAI("notify_ai_start", C.HERALD_AI_KIND_START, sessionID, task)
}

// NotifyAIProgress sends an "ai_progress" message (field "progress") to the
// subscribers of session sessionID. progress must encode to a JSON object.
func (s *Server) NotifyAIProgress(sessionID string, progress any) error {
	return s.notifyAI("notify_ai_progress", C.HERALD_AI_KIND_PROGRESS, sessionID, progress)
}

// NotifyAIComplete sends an "ai_complete" message (field "result") to the
// subscribers of session sessionID. result must encode to a JSON object.
func (s *Server) NotifyAIComplete(sessionID string, result any) error {
	return s.notifyAI("notify_ai_complete", C.HERALD_AI_KIND_COMPLETE, sessionID, result)
}

// NotifyAIError sends an "ai_error" message (field "error") to the
// subscribers of session sessionID. errPayload must encode to a JSON object;
// as a convenience, a Go error value (that is not a json.Marshaler) is sent
// as {"message": errPayload.Error()}.
func (s *Server) NotifyAIError(sessionID string, errPayload any) error {
	if e, ok := errPayload.(error); ok {
		if _, isMarshaler := errPayload.(json.Marshaler); !isMarshaler {
			errPayload = map[string]string{"message": e.Error()}
		}
	}
	return s.notifyAI("notify_ai_error", C.HERALD_AI_KIND_ERROR, sessionID, errPayload)
}

// NotifyAIDelta sends an "ai_delta" message (field "delta"): a piece of a
// job's token stream, {"jobId": ..., "text": "..."} ("text" required),
// appended to the job's text. A subscriber that falls behind gets a job's
// consecutive deltas merged into one instead of being evicted.
func (s *Server) NotifyAIDelta(sessionID string, delta any) error {
	return s.sessionCall("notify_ai_delta", sessionID, delta, func(h *C.herald_server, sid, js *C.char) Status {
		return Status(C.herald_notify_ai_delta(h, sid, js))
	})
}

// NotifyAICancelled sends an "ai_cancelled" message (field "cancelled", e.g.
// {"jobId": ...}): the job ended because it was cancelled, typically after an
// EventCancelRequested.
func (s *Server) NotifyAICancelled(sessionID string, cancelled any) error {
	return s.sessionCall("notify_ai_cancelled", sessionID, cancelled, func(h *C.herald_server, sid, js *C.char) Status {
		return Status(C.herald_notify_ai_cancelled(h, sid, js))
	})
}

// Broadcast sends msg (a JSON object) to every connected client, adding a
// "timestamp" field if msg has none.
func (s *Server) Broadcast(msg any) error {
	js, err := payload("broadcast", msg)
	if err != nil {
		return err
	}
	return s.call("broadcast", func(h *C.herald_server) Status {
		return Status(C.herald_broadcast(h, cptr(js)))
	}, js)
}

// BroadcastToUser sends msg (a JSON object) to every client that connected
// with ?userId=userID (channel "user:"+userID).
func (s *Server) BroadcastToUser(userID string, msg any) error {
	return s.keyedCall("broadcast_to_user", userID, msg, func(h *C.herald_server, id, js *C.char) Status {
		return Status(C.herald_broadcast_to_user(h, id, js))
	})
}

// Publish sends msg (a JSON object) to the subscribers of channel, adding
// "channel", "seq" and "epoch" fields. Published messages are kept in the
// channel's history (see History).
func (s *Server) Publish(channel string, msg any) error {
	return s.keyedCall("publish", channel, msg, func(h *C.herald_server, id, js *C.char) Status {
		return Status(C.herald_publish(h, id, js))
	})
}

// Send sends msg (a JSON object) to the one client clientID. It fails with
// ErrUnknownClient if no such client is connected.
func (s *Server) Send(clientID string, msg any) error {
	return s.keyedCall("send", clientID, msg, func(h *C.herald_server, id, js *C.char) Status {
		return Status(C.herald_send(h, id, js))
	})
}

// Stats returns a snapshot of the server's counters and connected clients.
func (s *Server) Stats() (Stats, error) {
	raw, err := s.stringCall("stats", func(h *C.herald_server, out **C.char) Status {
		return Status(C.herald_stats(h, out))
	})
	if err != nil {
		return Stats{}, err
	}
	st, err := parseStats(raw)
	if err != nil {
		return Stats{}, goError("stats", ErrInvalidJSON, "cannot decode the core's stats", err)
	}
	return st, nil
}

// History returns the messages kept in channel's history, oldest first, as
// they were delivered to subscribers (each a JSON object). Sessions are
// channel "session:"+sessionID and users "user:"+userID. A channel without
// history yields an empty slice.
func (s *Server) History(channel string) ([]json.RawMessage, error) {
	cch, err := cStringArg("history", channel)
	if err != nil {
		return nil, err
	}
	raw, err := s.stringCall("history", func(h *C.herald_server, out **C.char) Status {
		return Status(C.herald_history(h, cptr(cch), out))
	})
	runtime.KeepAlive(cch)
	if err != nil {
		return nil, err
	}
	msgs := []json.RawMessage{}
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return nil, goError("history", ErrInvalidJSON, "cannot decode the core's history", err)
	}
	return msgs, nil
}

// Job is one AI job of a session, as Server.Jobs and the jobs_snapshot
// message give it. Payloads are the host's JSON objects as sent.
type Job struct {
	// JobID is empty for the session's implicit job.
	JobID string `json:"jobId"`
	// State is "running", "complete", "error" or "cancelled".
	State    string          `json:"state"`
	Task     json.RawMessage `json:"task"`
	Progress json.RawMessage `json:"progress"`
	// Text is the text of its ai_delta messages so far.
	Text string `json:"text"`
	// Truncated is set when Text reached jobs.max_text_bytes.
	Truncated bool            `json:"truncated"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     json.RawMessage `json:"error,omitempty"`
	Cancelled json.RawMessage `json:"cancelled,omitempty"`
	StartedAt string          `json:"startedAt"`
	EndedAt   string          `json:"endedAt"`
}

// JobsSnapshot is a session's jobs as of Seq (in Epoch).
type JobsSnapshot struct {
	SessionID string `json:"sessionId"`
	Seq       uint64 `json:"seq"`
	Epoch     string `json:"epoch"`
	Jobs      []Job  `json:"jobs"`
}

// Jobs returns the state of a session's jobs (the same as
// GET /api/jobs/{sessionId}), for a page rendered on the server. Publishing
// only enqueues, so a notification made just before may not be in it yet.
func (s *Server) Jobs(sessionID string) (JobsSnapshot, error) {
	csid, err := cStringArg("jobs", sessionID)
	if err != nil {
		return JobsSnapshot{}, err
	}
	raw, err := s.stringCall("jobs", func(h *C.herald_server, out **C.char) Status {
		return Status(C.herald_jobs(h, cptr(csid), out))
	})
	runtime.KeepAlive(csid)
	if err != nil {
		return JobsSnapshot{}, err
	}
	var snapshot JobsSnapshot
	if err := json.Unmarshal(raw, &snapshot); err != nil {
		return JobsSnapshot{}, goError("jobs", ErrInvalidJSON, "cannot decode the core's jobs", err)
	}
	return snapshot, nil
}

// PresenceMember is one member of a channel: a subscriber.
type PresenceMember struct {
	// ClientID is the subscriber's client ID (as in events and for Send).
	ClientID string `json:"clientId"`
	// UserID is its user (from its token or the authorizer), "" if anonymous.
	UserID string `json:"userId"`
	// Status is the status it set ({"type":"presence","channel":…,
	// "status":"away"}), "online" until then.
	Status string `json:"status"`
}

// Presence is who is in a channel.
type Presence struct {
	Channel string `json:"channel"`
	// Members lists at most PresenceConfig.MaxMembers members.
	Members []PresenceMember `json:"members"`
	// Total counts every member.
	Total int `json:"total"`
	// Truncated is true when some members were left out of Members.
	Truncated bool `json:"truncated"`
}

// Presence returns who is in channel: every subscriber, with its user and the
// status it set. With a Redis broker it lists the members of every node (and
// waits for Redis, failing with ErrUnavailable when it does not answer).
// Sessions are channel "session:"+sessionID.
func (s *Server) Presence(channel string) (Presence, error) {
	cch, err := cStringArg("presence", channel)
	if err != nil {
		return Presence{}, err
	}
	raw, err := s.stringCall("presence", func(h *C.herald_server, out **C.char) Status {
		return Status(C.herald_presence(h, cptr(cch), out))
	})
	runtime.KeepAlive(cch)
	if err != nil {
		return Presence{}, err
	}
	p := Presence{Members: []PresenceMember{}}
	if err := json.Unmarshal(raw, &p); err != nil {
		return Presence{}, goError("presence", ErrInvalidJSON, "cannot decode the core's presence", err)
	}
	return p, nil
}

// Close stops the server: the core flushes its queues, closes every client
// with status 1001 (going away) and frees its resources, including the
// authorizer installed with SetAuthorizer (whose running calls see their
// context cancelled). The graceful phase
// is bounded by ctx's deadline, or DefaultCloseTimeout when ctx has none (0
// when ctx is already done); past it the core forces the shutdown and Close
// returns an error wrapping ErrTimeout. Either way the server is closed when
// Close returns, and the Events channel has been closed.
//
// A second Close returns an error wrapping ErrClosed.
func (s *Server) Close(ctx context.Context) error {
	if s == nil {
		return closedError("close")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	timeout := DefaultCloseTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	} else if ctx.Err() != nil {
		timeout = 0
	}
	ms := timeout.Milliseconds()
	if ms < 0 {
		ms = 0
	}
	if ms > math.MaxUint32 {
		ms = math.MaxUint32
	}

	s.mu.Lock()
	h := s.h
	if h == nil {
		s.mu.Unlock()
		return closedError("close")
	}
	s.h = nil
	err := func() error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		st := Status(C.herald_stop(h, C.uint32_t(ms)))
		if st == StatusOK {
			return nil
		}
		return statusError("close", st, C.GoString(C.herald_last_error()))
	}()
	s.mu.Unlock()

	// The core calls no authorizer any more and has released its handle
	// (the drop callback); running authorizers see their context cancelled.
	s.closeCancel()
	close(s.stopping)
	<-s.done
	return err
}

// eventLoop pulls events from the core into s.events until the server is
// closed, then closes s.events.
func (s *Server) eventLoop() {
	defer close(s.done)
	defer close(s.events)
	for {
		raw, st := s.nextEvent()
		switch st {
		case StatusOK:
			select {
			case s.events <- parseEvent(raw):
			case <-s.stopping: // nobody is receiving and Close is waiting
			}
		case StatusTimeout:
		case StatusInvalidHandle, StatusStopped:
			return
		default:
			// Unexpected failure (e.g. a caught panic): back off instead
			// of spinning; the loop ends when the server is closed.
			select {
			case <-s.stopping:
			case <-time.After(eventPollMS * time.Millisecond):
			}
		}
	}
}

// nextEvent waits up to eventPollMS for one event. It returns the event and
// StatusOK, StatusTimeout when there was none, StatusInvalidHandle once the
// server is closed, or another failure status.
func (s *Server) nextEvent() ([]byte, Status) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.h == nil {
		return nil, StatusInvalidHandle
	}
	var out *C.char
	st := Status(C.herald_next_event(s.h, eventPollMS, &out))
	if st != StatusOK {
		return nil, st
	}
	if out == nil {
		return nil, StatusNullArgument
	}
	raw := []byte(C.GoString(out))
	C.herald_string_free(out)
	return raw, StatusOK
}

// call runs fn with the live handle, on a locked OS thread so that
// herald_last_error is read on the thread that failed. keep is kept alive
// until fn has returned (the Go buffers fn passes to C).
func (s *Server) call(op string, fn func(h *C.herald_server) Status, keep ...[]byte) error {
	if s == nil {
		return closedError(op)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.h == nil {
		return closedError(op)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st := fn(s.h)
	runtime.KeepAlive(keep)
	if st == StatusOK {
		return nil
	}
	return statusError(op, st, C.GoString(C.herald_last_error()))
}

// keyedCall is call for the functions taking (string key, JSON payload).
func (s *Server) keyedCall(op, key string, msg any, fn func(h *C.herald_server, key, js *C.char) Status) error {
	ckey, err := cStringArg(op, key)
	if err != nil {
		return err
	}
	js, err := payload(op, msg)
	if err != nil {
		return err
	}
	return s.call(op, func(h *C.herald_server) Status {
		return fn(h, cptr(ckey), cptr(js))
	}, ckey, js)
}

// notifyAI is herald_notify_ai: the four NotifyAI* methods differ only in kind.
func (s *Server) notifyAI(op string, kind C.herald_ai_kind, sessionID string, msg any) error {
	return s.sessionCall(op, sessionID, msg, func(h *C.herald_server, sid, js *C.char) Status {
		return Status(C.herald_notify_ai(h, C.int32_t(kind), sid, js))
	})
}

// sessionCall is keyedCall for the notify functions.
func (s *Server) sessionCall(op, sessionID string, msg any, fn func(h *C.herald_server, sid, js *C.char) Status) error {
	return s.keyedCall(op, sessionID, msg, fn)
}

// stringCall runs a function that returns a core-allocated string and copies
// it into Go memory.
func (s *Server) stringCall(op string, fn func(h *C.herald_server, out **C.char) Status) ([]byte, error) {
	var raw []byte
	err := s.call(op, func(h *C.herald_server) Status {
		var out *C.char
		st := fn(h, &out)
		if out != nil {
			if st == StatusOK {
				raw = []byte(C.GoString(out))
			}
			C.herald_string_free(out)
		}
		return st
	})
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, goError(op, ErrNullArgument, "core returned OK without a string", nil)
	}
	return raw, nil
}

// payload converts a message argument to NUL-terminated JSON text.
func payload(op string, msg any) ([]byte, error) {
	var js []byte
	switch m := msg.(type) {
	case json.RawMessage:
		js = m
	case []byte:
		js = m
	case string:
		js = []byte(m)
	default:
		b, err := json.Marshal(msg)
		if err != nil {
			return nil, goError(op, ErrInvalidJSON, "cannot encode payload", err)
		}
		js = b
	}
	if containsNUL(js) {
		return nil, goError(op, ErrInvalidJSON, "payload contains a NUL byte", nil)
	}
	return cString(js), nil
}

// cStringArg converts a string argument to a NUL-terminated buffer, rejecting
// strings with an embedded NUL (C would silently truncate them).
func cStringArg(op, s string) ([]byte, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, goError(op, ErrInvalidArgument, "string argument contains a NUL byte", nil)
	}
	return cString([]byte(s)), nil
}

func containsNUL(b []byte) bool {
	for _, c := range b {
		if c == 0 {
			return true
		}
	}
	return false
}

// cString returns a copy of b followed by a NUL byte. The buffer is Go
// memory; it is passed to C only for the duration of one call, which the cgo
// pointer rules allow (the core copies what it keeps).
func cString(b []byte) []byte {
	buf := make([]byte, len(b)+1)
	copy(buf, b)
	return buf
}

// cptr returns buf as a C string pointer; buf must come from cString.
func cptr(buf []byte) *C.char {
	return (*C.char)(unsafe.Pointer(&buf[0]))
}
