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
