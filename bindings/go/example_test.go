package herald_test

import (
	"context"
	"errors"
	"log"
	"time"

	herald "github.com/herald-rt/herald/bindings/go"
)

// Start a server on a free port, log its events, stream an AI job to a
// session and shut down.
func Example() {
	srv, err := herald.Start(herald.Config{Port: herald.Int(0)})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for ev := range srv.Events() {
			log.Printf("%s client=%s user=%s", ev.Type, ev.ClientID, ev.UserID)
		}
	}()
	log.Printf("clients connect to ws://127.0.0.1:%d/ws?sessionId=job-1", srv.Port())

	_ = srv.NotifyAIStart("job-1", map[string]any{"name": "summarize"})
	_ = srv.NotifyAIProgress("job-1", map[string]any{"percent": 50})
	_ = srv.NotifyAIComplete("job-1", map[string]any{"summary": "..."})

	if err := srv.Send("some-client", `{"type":"hello"}`); errors.Is(err, herald.ErrUnknownClient) {
		log.Print("that client is not connected")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		log.Print(err)
	}
}

// Require a JWT (HS256) from every client, and let a Go function decide
// which sessions a user may follow.
func ExampleServer_SetAuthorizer() {
	srv, err := herald.Start(herald.Config{
		Port: herald.Int(0),
		Auth: &herald.AuthConfig{
			Required:            true,
			JWTSecret:           "change-me-to-a-long-random-secret",
			PublicChannels:      []string{"news"},
			AuthorizerTimeoutMS: 2000,
		},
		AllowedOrigins:      []string{"https://app.example"},
		MaxConnectionsPerIP: herald.Int(20),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close(context.Background())

	owns := func(ctx context.Context, user, channel string) bool {
		return channel == "session:"+user+"-job" // e.g. a database query bounded by ctx
	}
	err = srv.SetAuthorizer(func(ctx context.Context, req herald.AuthRequest) herald.AuthDecision {
		switch req.Type {
		case herald.AuthConnect:
			// Only clients whose token the core verified; keep its user.
			return herald.AuthDecision{Allow: req.TokenUserID != ""}
		case herald.AuthSubscribe:
			return herald.AuthDecision{Allow: req.UserID != "" && owns(ctx, req.UserID, req.Channel)}
		}
		return herald.AuthDecision{} // deny
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("clients connect to ws://127.0.0.1:%d/ws?token=<JWT>", srv.Port())
}
