package herald

import (
	"encoding/json"
	"log/slog"
)

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
// HistoryConfig.Size, MaxConnectionsPerIP, SocketSendBuffer,
// AuthConfig.JWTLeewaySeconds, RateLimitConfig.MessagesPerSecond and
// RateLimitConfig.MaxViolations are pointers for the same reason (their zero
// means "off", "unlimited", "system autotuning", "no leeway" or "no
// tolerance"). The other numeric fields use zero for "core
// default"; the core rejects zero for all of them except WorkerThreads, whose
// zero is the default anyway.
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
	// Jobs bounds the state kept of each session's AI jobs (see Server.Jobs);
	// nil keeps the core defaults.
	Jobs *JobsConfig `json:"jobs,omitempty"`
	// AI configures how AI notifications are sent; nil keeps the defaults.
	AI *AIConfig `json:"ai,omitempty"`

	// Auth configures authentication (JWTs verified by the core) and
	// channel permissions; nil keeps the core defaults (open mode: no
	// authentication unless an authorizer is set with Server.SetAuthorizer).
	Auth *AuthConfig `json:"auth,omitempty"`
	// AllowedOrigins lists the browser origins allowed to connect, matched
	// exactly (e.g. "https://app.example.com"). A handshake with another
	// Origin header is refused with HTTP 403. Empty allows any origin;
	// clients that send no Origin header (non-browsers) are always allowed.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
	// MaxConnectionsPerIP caps the open sockets per remote IP address; more
	// are dropped right after accept. nil keeps the core default (0) and a
	// pointer to 0 means no per-IP limit.
	MaxConnectionsPerIP *int `json:"max_connections_per_ip,omitempty"`
	// MaxSubscriptionsPerClient caps the channels one client may be
	// subscribed to at once (core default 1024).
	MaxSubscriptionsPerClient int `json:"max_subscriptions_per_client,omitempty"`
	// RateLimit configures the per-client message rate limit; nil keeps the
	// core defaults (which are on: 50 messages/s, burst 100).
	RateLimit *RateLimitConfig `json:"rate_limit,omitempty"`
	// TLS makes the server serve wss:// (and https:// for its HTTP
	// endpoints) with the given PEM files; nil serves plain ws://.
	TLS *TLSConfig `json:"tls,omitempty"`
	// Listen serves WebSocket clients (nil: the core default, true); false
	// starts an emitter that only publishes through Broker (a worker, a job).
	Listen *bool `json:"listen,omitempty"`
	// Broker is where publications are sequenced and kept; nil keeps them in
	// this process. A Redis broker shares them between every node and emitter
	// that names the same Redis and prefix.
	Broker *BrokerConfig `json:"broker,omitempty"`
	// Presence configures who-is-in-a-channel tracking (see Server.Presence);
	// nil keeps the core defaults (on, 30 s ttl, 1000 members listed).
	Presence *PresenceConfig `json:"presence,omitempty"`
	// AdminToken is the Bearer token for GET /api/ws/stats (and every admin
	// endpoint): when set, a request without "Authorization: Bearer <token>"
	// gets 401. Unset, the endpoints are open in open mode and always answer
	// 401 in secure mode. Server.Stats is in-process and needs no token.
	AdminToken string `json:"admin_token,omitempty"`

	// ClientQueueBytes is the number of bytes queued for one client at most,
	// counting every way bytes wait for it (its queue, replays, pongs and
	// error replies, the socket writer's buffer); over it the client is
	// evicted with 1013. A replay larger than this is refused
	// (recovered:false). Zero keeps the core default.
	ClientQueueBytes int `json:"client_queue_bytes,omitempty"`
	// SocketSendBuffer is SO_SNDBUF for client sockets, in bytes (the kernel
	// doubles it); a pointer to 0 keeps the system's autotuning and nil the
	// core default. It bounds what a stalled client pins in the kernel, which
	// is not counted in ClientQueueBytes.
	SocketSendBuffer *int `json:"socket_send_buffer,omitempty"`
	// IOUring (Linux; nil: the core default, true) sends a write pass's
	// messages to many client sockets with one io_uring system call; false,
	// or a kernel that refuses a ring, gives each socket its own send.
	IOUring *bool `json:"io_uring,omitempty"`
	// MaxMemory is the number of bytes for all client queues and history
	// together; over it the clients with the largest queues are evicted
	// first, then history is trimmed. Zero keeps the core default.
	MaxMemory int `json:"max_memory,omitempty"`
	// EventQueueBytes bounds the bytes of events queued for the host (with
	// EventQueueSize); beyond it events are dropped and counted
	// (Stats.EventsDropped). Zero keeps the core default.
	EventQueueBytes int `json:"event_queue_bytes,omitempty"`

	// EventBuffer is the capacity of the Go channel returned by
	// Server.Events (default 256). It is not sent to the core.
	EventBuffer int `json:"-"`
	// Logger receives the binding's own diagnostics (an authorizer that
	// panicked, answered too late or returned an invalid decision). nil
	// means slog.Default(). It is not sent to the core.
	Logger *slog.Logger `json:"-"`
}

// AuthConfig configures authentication and channel permissions (the core's
// "auth" object). Zero (nil) fields keep the core defaults.
//
// The server is in secure mode as soon as Required is set, a JWT key
// (JWTSecret or JWTPublicKey) is configured, or an authorizer is installed
// with Server.SetAuthorizer. In secure mode a client's identity comes only
// from its token (the "sub" claim) or the authorizer, the userId query
// parameter is ignored, and channel rules apply: "user:U" only for user U
// itself; other channels only if the token's "channels" claim, the
// authorizer's granted channels or PublicChannels match them, or else the
// authorizer allows them. Refused subscriptions are answered with an error
// message of code "forbidden" (the client stays connected).
type AuthConfig struct {
	// Required closes clients that do not authenticate (missing, malformed,
	// forged or expired token, or an authorizer denial) with close code 1008
	// "Unauthorized" right after the WebSocket handshake.
	Required bool `json:"required,omitempty"`
	// JWTSecret is the HS256 secret (at least 16 bytes). Clients pass the
	// token as ?token= or in an "Authorization: Bearer" header; it must
	// carry "sub" (the user ID) and "exp".
	JWTSecret string `json:"jwt_secret,omitempty"`
	// JWTPublicKey is an RSA (RS256) or EC P-256 (ES256) public key in PEM
	// form (the key text, not a file name).
	JWTPublicKey string `json:"jwt_public_key,omitempty"`
	// JWTIssuer, when set, must equal the token's "iss".
	JWTIssuer string `json:"jwt_issuer,omitempty"`
	// JWTAudience, when set, must be in the token's "aud".
	JWTAudience string `json:"jwt_audience,omitempty"`
	// JWTLeewaySeconds is the clock skew tolerated on "exp" and "nbf"; nil
	// keeps the core default (30) and a pointer to 0 means none (see Int).
	JWTLeewaySeconds *int `json:"jwt_leeway_s,omitempty"`
	// PublicChannels lists channel patterns any authenticated client may
	// subscribe to ("news", "public:*"; "*" matches any run of characters).
	PublicChannels []string `json:"public_channels,omitempty"`
	// AuthorizerTimeoutMS is how long the authorizer installed with
	// Server.SetAuthorizer may take before the request is denied, in
	// milliseconds (core default 5000). It is also the deadline of the
	// context passed to the authorizer.
	AuthorizerTimeoutMS int `json:"authorizer_timeout_ms,omitempty"`
}

// RateLimitConfig configures the per-client token bucket for client
// messages (the core's "rate_limit" object). A refused message is answered
// with an error message of code "rate_limited"; a client refused more than
// MaxViolations times within 10 seconds is closed with code 1008.
type RateLimitConfig struct {
	// MessagesPerSecond is the sustained rate; nil keeps the core default
	// (50) and a pointer to 0 turns the limit off (see Int).
	MessagesPerSecond *int `json:"messages_per_second,omitempty"`
	// Burst is the bucket size (core default 100); it must be positive when
	// the limit is on.
	Burst int `json:"burst,omitempty"`
	// MaxViolations is the number of refused messages tolerated within 10
	// seconds before the client is closed; nil keeps the core default (50)
	// and a pointer to 0 closes a client at its first refused message.
	MaxViolations *int `json:"max_violations,omitempty"`
}

// PresenceConfig is the core's "presence" object. Zero (nil) fields keep the
// core defaults.
type PresenceConfig struct {
	// Enabled, when a pointer to false, turns presence off (Server.Presence
	// then fails with ErrInvalidArgument); nil keeps it on (see Bool).
	Enabled *bool `json:"enabled,omitempty"`
	// TTLMS is, with a Redis broker, how long a member whose node stopped
	// refreshing it (the node was killed) stays listed, in milliseconds.
	TTLMS int `json:"ttl_ms,omitempty"`
	// MaxMembers is the number of members listed in one answer at most.
	MaxMembers int `json:"max_members,omitempty"`
}

// BrokerConfig is the core's "broker" object.
type BrokerConfig struct {
	// Redis shares publications, history and recovery through a Redis server.
	Redis *RedisConfig `json:"redis,omitempty"`
}

// RedisConfig is the core's "broker.redis" object.
type RedisConfig struct {
	// URL is redis://[user:password@]host:port[/db].
	URL string `json:"url"`
	// Prefix of every key and PUB/SUB channel ("" keeps the core default,
	// "herald:"), so several apps can share one Redis.
	Prefix string `json:"prefix,omitempty"`
	// TimeoutMS is how long a host call waits for Redis to confirm a
	// publication (0 keeps the core default, 2000).
	TimeoutMS int `json:"timeout_ms,omitempty"`
}

// TLSConfig names the PEM files the server uses to serve wss:// (the core's
// "tls" object). Both are required.
type TLSConfig struct {
	// CertFile is the path of the PEM certificate chain, leaf first.
	CertFile string `json:"cert"`
	// KeyFile is the path of the PEM private key.
	KeyFile string `json:"key"`
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

// JobsConfig bounds the AI job state the core keeps per session, for the
// jobs_snapshot a subscriber gets first. Zero fields keep the core defaults.
type JobsConfig struct {
	// TTLMS is how long a job is kept after it ends (default 1 hour).
	TTLMS int `json:"ttl_ms,omitempty"`
	// MaxPerSession caps the jobs kept per session (default 16).
	MaxPerSession int `json:"max_per_session,omitempty"`
	// MaxTextBytes caps the streamed text kept per job (default 256 KiB).
	MaxTextBytes int `json:"max_text_bytes,omitempty"`
	// MaxBytes caps the job state across sessions with the memory broker
	// (default 64 MiB).
	MaxBytes int `json:"max_bytes,omitempty"`
}

// AIConfig configures how AI notifications are sent.
type AIConfig struct {
	// DeltaRollupMS: a job's ai_delta messages made within this many ms go out
	// as one (text concatenated), for every subscriber; 0 sends each at once.
	// Memory broker only.
	DeltaRollupMS int `json:"delta_rollup_ms,omitempty"`
}

// Int returns a pointer to v, for the Config fields where zero differs from
// "unset": Config{Port: herald.Int(0)}, HistoryConfig{Size: herald.Int(0)},
// RateLimitConfig{MessagesPerSecond: herald.Int(0)}.
func Int(v int) *int { return &v }

// Bool returns a pointer to v, for the Config fields where false differs
// from "unset": Config{Listen: herald.Bool(false)} starts an emitter.
func Bool(v bool) *bool { return &v }

// configJSON returns the JSON text passed to herald_start.
func (c Config) configJSON() ([]byte, error) {
	return json.Marshal(c)
}
