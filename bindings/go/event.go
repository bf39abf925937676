package herald

import (
	"encoding/json"
	"time"
)

// EventType is the "type" of an Event.
type EventType string

// The event types emitted by the core.
const (
	// EventConnected: a WebSocket client completed its handshake.
	EventConnected EventType = "connected"
	// EventDisconnected: a client's connection ended.
	EventDisconnected EventType = "disconnected"
	// EventSubscribed: a client subscribed to a channel.
	EventSubscribed EventType = "subscribed"
	// EventUnsubscribed: a client unsubscribed from a channel.
	EventUnsubscribed EventType = "unsubscribed"
	// EventCancelRequested: a client asked to cancel a job of session
	// SessionID (JobID; empty for the session's implicit job), allowed as a
	// subscribe to the session would be. Stop the job, then NotifyAICancelled.
	EventCancelRequested EventType = "cancel_requested"
	// EventClientMessage: a client sent a JSON object with a "type" the core
	// does not handle itself; the whole object is in Event.Message.
	EventClientMessage EventType = "client_message"
)

// Event is something that happened on the server, delivered on the channel
// returned by Server.Events. Fields that do not apply to an event type, or
// that the core reported as null, are left at their zero value.
type Event struct {
	// Type says what happened.
	Type EventType
	// ClientID identifies the WebSocket client (all event types).
	ClientID string
	// UserID is the client's userId query parameter, if any.
	UserID string
	// SessionID is the client's sessionId query parameter, if any.
	SessionID string
	// Channel is the channel of EventSubscribed and EventUnsubscribed
	// (sessions are "session:ID", users "user:ID").
	Channel string
	// Code is the WebSocket close code of EventDisconnected, or 0 when the
	// connection ended without a close frame.
	Code int
	// Reason is the close reason of EventDisconnected.
	Reason string
	// RemoteAddr is the peer address of EventConnected.
	RemoteAddr string
	// JobID is the job of EventCancelRequested; empty for the session's
	// implicit job.
	JobID string
	// Message is the client's whole JSON object for EventClientMessage.
	Message json.RawMessage
	// Timestamp is when the core produced the event (zero if it could not be
	// parsed).
	Timestamp time.Time
	// Raw is the event exactly as the core reported it, including any field
	// this version of the binding does not map.
	Raw json.RawMessage
}

// wireEvent is the core's JSON form of an event.
type wireEvent struct {
	Type       EventType       `json:"type"`
	ClientID   *string         `json:"clientId"`
	UserID     *string         `json:"userId"`
	SessionID  *string         `json:"sessionId"`
	Channel    *string         `json:"channel"`
	Code       *int            `json:"code"`
	Reason     *string         `json:"reason"`
	RemoteAddr *string         `json:"remoteAddr"`
	JobID      *string         `json:"jobId"`
	Message    json.RawMessage `json:"message"`
	Timestamp  *string         `json:"timestamp"`
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// parseEvent converts the core's event JSON. It never fails: fields that do
// not decode are left empty and the original text stays in Raw.
func parseEvent(raw []byte) Event {
	ev := Event{Raw: json.RawMessage(raw)}
	var w wireEvent
	if err := json.Unmarshal(raw, &w); err != nil {
		// Fall back to at least the type.
		var t struct {
			Type EventType `json:"type"`
		}
		_ = json.Unmarshal(raw, &t)
		ev.Type = t.Type
		return ev
	}
	ev.Type = w.Type
	ev.ClientID = deref(w.ClientID)
	ev.UserID = deref(w.UserID)
	ev.SessionID = deref(w.SessionID)
	ev.Channel = deref(w.Channel)
	ev.Code = deref(w.Code)
	ev.Reason = deref(w.Reason)
	ev.RemoteAddr = deref(w.RemoteAddr)
	ev.JobID = deref(w.JobID)
	if len(w.Message) > 0 && string(w.Message) != "null" {
		ev.Message = w.Message
	}
	if w.Timestamp != nil {
		if ts, err := time.Parse(time.RFC3339Nano, *w.Timestamp); err == nil {
			ev.Timestamp = ts
		}
	}
	return ev
}
