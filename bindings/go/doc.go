// Package herald embeds the Herald real-time notification core (a Rust
// WebSocket server with a C ABI) in a Go program through cgo.
//
// A Server owns its own WebSocket/HTTP listener and I/O threads inside the
// core; the Go side only enqueues messages and reads events:
//
//	srv, err := herald.Start(herald.Config{Port: herald.Int(0)}) // any free port
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer srv.Close(context.Background())
//
//	go func() {
//		for ev := range srv.Events() {
//			log.Printf("%s client=%s", ev.Type, ev.ClientID)
//		}
//	}()
//
//	_ = srv.NotifyAIStart("session-1", map[string]any{"name": "summarize"})
//
// Clients connect to ws://HOST:PORT/ws (wss:// with Config.TLS; query
// parameters userId, sessionId, token) and speak Herald's JSON wire protocol
// v1.
//
// # Messages
//
// Every payload parameter typed any (task, progress, result, error, message)
// must encode to a JSON object. Values are encoded with encoding/json, except:
//
//   - json.RawMessage, []byte and string are taken as JSON text and passed to
//     the core verbatim (so srv.Broadcast(`{"type":"hello"}`) sends an object,
//     not a JSON string);
//   - for NotifyAIError only, a Go error value that does not implement
//     json.Marshaler is sent as {"message": err.Error()}.
//
// # Errors
//
// Failures are returned as *Error values that wrap one of the sentinel errors
// (ErrInvalidJSON, ErrInvalidArgument, ErrUnknownClient, ErrQueueFull,
// ErrLimit, ErrClosed, ...), so callers test them with errors.Is and can get the core's
// status code and message with errors.As.
//
// # Security
//
// Config.Auth (JWT verification, public channels), Config.AllowedOrigins,
// Config.MaxConnectionsPerIP, Config.MaxSubscriptionsPerClient,
// Config.RateLimit and Config.TLS (wss://) configure the checks the core
// enforces; Stats reports their counters (AuthFailures, Forbidden,
// OriginRejected, RateLimited, ...). Server.SetAuthorizer installs a Go
// function that decides on connects and subscribes; it runs in a goroutine
// per request with a context bounded by AuthConfig.AuthorizerTimeoutMS.
//
// # Concurrency
//
// All methods of Server are safe for concurrent use by multiple goroutines and
// safe to call after Close, in which case they return an error wrapping
// ErrClosed.
//
// # Building
//
// The package links the core statically from ../../target/release/libherald.a
// and includes ../../include/herald.h, both relative to this package's
// directory in a Herald checkout, so run `cargo build --release` at the
// repository root before `go build`. The build tags herald_dynamic (link
// libherald.so instead) and herald_external (no built-in flags; supply
// CGO_CFLAGS and CGO_LDFLAGS yourself) change that; see README.md.
package herald
