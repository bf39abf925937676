package herald

import "encoding/json"

// Config configures a Server. It is encoded to the core's JSON configuration
// object; every field is optional and a zero value (nil for pointers) leaves
// the core's default in place, so Config{} starts a server with all defaults.
//
// Port is a pointer because 0 is meaningful to the core ("bind any free
// port") and must be distinguishable from "not set" (core default 3001):
//
//	herald.Config{}                     // port 3001
//	herald.Config{Port: herald.Int(0)}  // any free port; read it with srv.Port()
//	herald.Config{Port: herald.Int(8080)}
//
// HistoryConfig.Size is a pointer for the same reason (0 turns history off).
// The other numeric fields use zero for "core default"; the core rejects zero
// for all of them except WorkerThreads, whose zero is the default anyway.
type Config struct {
	// Host is the interface to bind (core default "127.0.0.1").
	Host string `json:"host,omitempty"`
	// Port is the TCP port to bind; nil means the core default (3001) and a
	// pointer to 0 means any free port. See Int.
	Port *int `json:"port,omitempty"`
	// Path is the WebSocket endpoint path (core default "/ws").
	Path string `json:"path,omitempty"`
	// HeartbeatIntervalMS is the interval between server pings in
	// milliseconds (core default 30000).
	HeartbeatIntervalMS int `json:"heartbeat_interval_ms,omitempty"`
	// HeartbeatTimeoutMS is how long a client may stay silent before it is
	// disconnected, in milliseconds (core default 60000).
	HeartbeatTimeoutMS int `json:"heartbeat_timeout_ms,omitempty"`
	// MaxMessageSize is the largest accepted client frame in bytes (core
	// default 65536).
	MaxMessageSize int `json:"max_message_size,omitempty"`
	// ClientQueueSize is the per-client outbound queue length (core default
	// 1024); clients that fall further behind are evicted.
	ClientQueueSize int `json:"client_queue_size,omitempty"`
	// MaxConnections caps concurrent WebSocket connections (core default).
	MaxConnections int `json:"max_connections,omitempty"`
	// WorkerThreads is the number of I/O threads of the core's runtime (core
	// default 0: one per CPU, at most 4).
	WorkerThreads int `json:"worker_threads,omitempty"`
	// PublishQueueSize bounds the queue between the host API and the I/O
	// threads; when it is full, calls fail with ErrQueueFull (core default).
	PublishQueueSize int `json:"publish_queue_size,omitempty"`
	// EventQueueSize bounds the core's queue of events waiting to be read
	// by Events (core default).
	EventQueueSize int `json:"event_queue_size,omitempty"`
	// HandshakeTimeoutMS bounds the HTTP upgrade handshake, in milliseconds
	// (core default).
	HandshakeTimeoutMS int `json:"handshake_timeout_ms,omitempty"`
	// MaxChannels caps the number of distinct channels (sessions, users and
	// plain channels) the server holds (core default).
	MaxChannels int `json:"max_channels,omitempty"`
	// StatsClientLimit caps the clients listed individually in Stats (core
	// default).
	StatsClientLimit int `json:"stats_client_limit,omitempty"`
	// History configures per-channel message history (see Server.History);
	// nil keeps the core defaults.
	History *HistoryConfig `json:"history,omitempty"`

	// EventBuffer is the capacity of the Go channel returned by
	// Server.Events (default 256). It is not sent to the core.
	EventBuffer int `json:"-"`
}

// HistoryConfig configures the core's per-channel message history. Zero
// (nil) fields keep the core defaults.
type HistoryConfig struct {
	// Size is the number of messages kept per channel; nil keeps the core
	// default and a pointer to 0 turns history off (see Int).
	Size *int `json:"size,omitempty"`
	// TTLMS is how long a message is kept, in milliseconds.
	TTLMS int `json:"ttl_ms,omitempty"`
	// MaxBytes caps the total size of a channel's history in bytes.
	MaxBytes int `json:"max_bytes,omitempty"`
}

// Int returns a pointer to v, for the Config fields where zero differs from
// "unset": Config{Port: herald.Int(0)}, HistoryConfig{Size: herald.Int(0)}.
func Int(v int) *int { return &v }

// configJSON returns the JSON text passed to herald_start.
func (c Config) configJSON() ([]byte, error) {
	return json.Marshal(c)
}
