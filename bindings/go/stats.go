package herald

import (
	"encoding/json"
	"fmt"
)

// Stats is a snapshot of the server's counters, as returned by Server.Stats
// (the same document as GET /api/ws/stats on the server's port). Counters
// start at zero when the server starts.
type Stats struct {
	// TotalConnections counts every WebSocket connection accepted since Start.
	TotalConnections uint64 `json:"totalConnections"`
	// ActiveConnections is the number of currently open WebSocket connections.
	ActiveConnections uint64 `json:"activeConnections"`
	// Clients describes open connections, at most Config.StatsClientLimit of
	// them (see ClientsListed).
	Clients []ClientStats `json:"clients"`
	// ClientsListed is len(Clients).
	ClientsListed uint64 `json:"clientsListed"`
	// MessagesSent counts messages sent to clients.
	MessagesSent uint64 `json:"messagesSent"`
	// MessagesReceived counts messages received from clients.
	MessagesReceived uint64 `json:"messagesReceived"`
	// MessagesDropped counts messages that could not be queued for a client
	// (it was being evicted or closing).
	MessagesDropped uint64 `json:"messagesDropped"`
	// Publications counts messages published to channels (notify, publish,
	// broadcast to user).
	Publications uint64 `json:"publications"`
	// Evictions counts clients evicted with 1013: over their byte or message
	// budget, a stalled socket, or the server over Config.MaxMemory.
	Evictions uint64 `json:"evictions"`
	// WriteStalls counts, of those, clients whose socket took no byte for
	// Config.HeartbeatTimeoutMS.
	WriteStalls uint64 `json:"writeStalls"`
	// MemoryEvictions counts, of those, clients evicted because the server
	// was over Config.MaxMemory.
	MemoryEvictions uint64 `json:"memoryEvictions"`
	// ProtocolErrors counts clients closed for framing errors (1002) or
	// invalid UTF-8 (1007).
	ProtocolErrors uint64 `json:"protocolErrors"`
	// HeartbeatTimeouts counts clients closed for not answering heartbeats.
	HeartbeatTimeouts uint64 `json:"heartbeatTimeouts"`
	// InvalidMessages counts client messages answered with an error.
	InvalidMessages uint64 `json:"invalidMessages"`
	// OversizedMessages counts client messages over Config.MaxMessageSize.
	OversizedMessages uint64 `json:"oversizedMessages"`
	// RejectedConnections counts sockets refused over Config.MaxConnections
	// (refusals over MaxConnectionsPerIP are in RejectedPerIP).
	RejectedConnections uint64 `json:"rejectedConnections"`
	// RejectedPerIP counts sockets dropped because their IP address already
	// had Config.MaxConnectionsPerIP open sockets.
	RejectedPerIP uint64 `json:"rejectedPerIp"`
	// OpenSockets is the number of currently open sockets (HTTP and
	// WebSocket), as counted against MaxConnections and MaxConnectionsPerIP.
	OpenSockets uint64 `json:"openSockets"`
	// HandshakeTimeouts counts sockets dropped because they did not complete
	// the TLS or HTTP upgrade handshake within Config.HandshakeTimeoutMS.
	HandshakeTimeouts uint64 `json:"handshakeTimeouts"`
	// TLSFailures counts failed TLS handshakes (Config.TLS).
	TLSFailures uint64 `json:"tlsFailures"`
	// OriginRejected counts handshakes refused with HTTP 403 because their
	// Origin is not in Config.AllowedOrigins.
	OriginRejected uint64 `json:"originRejected"`
	// AuthFailures counts clients closed with 1008 "Unauthorized" (bad or
	// missing token, or denied by the authorizer).
	AuthFailures uint64 `json:"authFailures"`
	// Forbidden counts subscriptions refused with a "forbidden" error.
	Forbidden uint64 `json:"forbidden"`
	// RateLimited counts client messages refused with a "rate_limited"
	// error (Config.RateLimit).
	RateLimited uint64 `json:"rateLimited"`
	// RateLimitCloses counts clients closed with 1008 for exceeding
	// RateLimitConfig.MaxViolations.
	RateLimitCloses uint64 `json:"rateLimitCloses"`
	// PublishQueueFull counts host calls that failed with ErrQueueFull.
	PublishQueueFull uint64 `json:"publishQueueFull"`
	// ChannelsRejected counts subscriptions refused over Config.MaxChannels.
	ChannelsRejected uint64 `json:"channelsRejected"`
	// Recoveries counts successful history recoveries after reconnects.
	Recoveries uint64 `json:"recoveries"`
	// RecoveriesFailed counts recoveries that could not be served.
	RecoveriesFailed uint64 `json:"recoveriesFailed"`
	// QueuedBytes is the bytes waiting for clients, each subscriber's copy of
	// a shared frame counted.
	QueuedBytes uint64 `json:"queuedBytes"`
	// MemoryBytes is QueuedBytes plus history: what Config.MaxMemory bounds.
	MemoryBytes uint64 `json:"memoryBytes"`
	// MaxMemory is the Config.MaxMemory bound in force.
	MaxMemory uint64 `json:"maxMemory"`
	// Channels is the number of channels the server currently holds.
	Channels uint64 `json:"channels"`
	// Subscriptions is the number of current client subscriptions.
	Subscriptions uint64 `json:"subscriptions"`
	// HistoryBytes is the size of all kept history.
	HistoryBytes uint64 `json:"historyBytes"`
	// PublishQueueDepth is the number of host calls waiting for the core's
	// dispatcher, bounded by Config.PublishQueueSize.
	PublishQueueDepth uint64 `json:"publishQueueDepth"`
	// BackloggedClients is the number of healthy clients over a quarter of
	// their queue budget: what WaitDrained waits for.
	BackloggedClients uint64 `json:"backloggedClients"`
	// CongestedClients is the number of healthy clients over half of their
	// queue budget.
	CongestedClients uint64 `json:"congestedClients"`
	// Backpressure tells the host to slow down: a healthy client is over half
	// of its queue budget, or the publish queue is over half full. Call
	// WaitDrained while it is true.
	Backpressure bool `json:"backpressure"`
	// EventsQueued is the number of events waiting in the core for Events.
	EventsQueued uint64 `json:"eventsQueued"`
	// EventsQueuedBytes is the estimated size of those events, bounded by
	// Config.EventQueueBytes.
	EventsQueuedBytes uint64 `json:"eventsQueuedBytes"`
	// EventsDropped counts events dropped because the core's event queue was
	// full (Config.EventQueueSize or Config.EventQueueBytes).
	EventsDropped uint64 `json:"eventsDropped"`
	// UptimeMS is the time since Start in milliseconds.
	UptimeMS uint64 `json:"uptimeMs"`
	// Port is the bound port.
	Port int `json:"port"`
	// Path is the WebSocket endpoint path.
	Path string `json:"path"`
	// Version is the core's version.
	Version string `json:"version"`

	// Broker is the broker's health (Kind "memory" or "redis").
	Broker BrokerStats `json:"broker"`

	// Raw is the whole stats document as the core reported it, including
	// fields this version of the binding does not map.
	Raw json.RawMessage `json:"-"`
}

// ClientStats describes one connected client in Stats.
type ClientStats struct {
	// ID is the client ID (as in Event.ClientID and Server.Send).
	ID string `json:"id"`
	// UserID is the client's userId, or "" if none.
	UserID string `json:"userId"`
	// SessionID is the client's sessionId, or "" if none.
	SessionID string `json:"sessionId"`
	// IsAlive reports whether the client answered the last heartbeat.
	IsAlive bool `json:"isAlive"`
	// State is the connection state (the WebSocket readyState numbering).
	State ClientState `json:"state"`
	// RemoteAddr is the client's address (host:port).
	RemoteAddr string `json:"remoteAddr"`
	// Subscriptions is the number of channels the client is subscribed to.
	Subscriptions uint64 `json:"subscriptions"`
	// Queued is the number of messages waiting in the client's queue.
	Queued uint64 `json:"queued"`
	// QueuedBytes is the bytes waiting for this client (its queue and its
	// socket writer), bounded by Config.ClientQueueBytes.
	QueuedBytes uint64 `json:"queuedBytes"`
	// MessagesSent counts messages sent to this client.
	MessagesSent uint64 `json:"messagesSent"`
	// IdleMS is the time since the client was last heard from, in
	// milliseconds.
	IdleMS uint64 `json:"idleMs"`
}

// ClientState is a client's connection state in ClientStats, numbered like
// the browser WebSocket readyState.
type ClientState int

// Client connection states.
const (
	ClientOpen    ClientState = 1
	ClientClosing ClientState = 2
	ClientClosed  ClientState = 3
)

// String returns "open", "closing", "closed" or "state(N)".
func (s ClientState) String() string {
	switch s {
	case ClientOpen:
		return "open"
	case ClientClosing:
		return "closing"
	case ClientClosed:
		return "closed"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// parseStats decodes the core's stats document.
func parseStats(raw []byte) (Stats, error) {
	var s Stats
	if err := json.Unmarshal(raw, &s); err != nil {
		return Stats{}, err
	}
	s.Raw = json.RawMessage(raw)
	return s, nil
}

// BrokerStats is the "broker" object of the stats: Kind is "memory" (the
// default, nothing else is set) or "redis", with the link's health.
type BrokerStats struct {
	Kind string `json:"kind"`
	// Node is this process's id in Redis (client ids start with it).
	Node string `json:"node,omitempty"`
	// Connected is false while the link to Redis is down.
	Connected bool `json:"connected"`
	// Reconnects counts the links to Redis restored.
	Reconnects uint64 `json:"reconnects"`
	// PublishRoundTripUS is the last publication's round trip to Redis, in
	// microseconds.
	PublishRoundTripUS uint64 `json:"publishRoundTripUs"`
	// PublishErrors counts publications Redis did not take.
	PublishErrors uint64 `json:"publishErrors"`
}
