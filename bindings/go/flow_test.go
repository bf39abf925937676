package herald

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A host that publishes faster than its client reads waits with WaitDrained
// between batches: everything arrives in order and nobody is evicted.
func TestWaitDrainedPacesABurstToASlowReader(t *testing.T) {
	const (
		queue    = 64
		messages = 2000
		// A quarter of the queue: after a wait a client holds at most that
		// many, so one more batch keeps it at half of its budget.
		batch = queue / 4
	)
	srv := startServer(t, Config{ClientQueueSize: queue})
	c := dial(t, srv, nil)
	c.subscribe("burst")

	got := make(chan error, 1)
	go func() {
		for n := 1; n <= messages; n++ {
			m, err := c.read()
			if err != nil {
				got <- fmt.Errorf("after %d messages: %w", n-1, err)
				return
			}
			if m.num("n") != float64(n) {
				got <- fmt.Errorf("message %d has n=%v", n, m["n"])
				return
			}
			if n%100 == 0 {
				time.Sleep(10 * time.Millisecond) // a reader slower than the host
			}
		}
		got <- nil
	}()

	pad := strings.Repeat("x", 200)
	started := time.Now()
	for n := 1; n <= messages; n++ {
		if err := srv.Publish("burst", map[string]any{"n": n, "pad": pad}); err != nil {
			t.Fatalf("Publish %d: %v", n, err)
		}
		if n%batch == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := srv.WaitDrained(ctx)
			cancel()
			if err != nil {
				t.Fatalf("WaitDrained after %d: %v", n, err)
			}
		}
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the reader did not get every message")
	}
	stats, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if stats.Evictions != 0 || stats.Backpressure || stats.BackloggedClients != 0 {
		t.Fatalf("evictions=%d backpressure=%v backlogged=%d", stats.Evictions, stats.Backpressure, stats.BackloggedClients)
	}
	if on, err := srv.Backpressure(); err != nil || on {
		t.Fatalf("Backpressure() = %v, %v after draining", on, err)
	}
	t.Logf("%d messages to a slow reader in %v", messages, time.Since(started))
}

func TestWaitDrainedHonoursItsContextAndClose(t *testing.T) {
	srv := startServer(t, Config{})
	if err := srv.WaitDrained(nil); err != nil {
		t.Fatalf("WaitDrained with nothing published: %v", err)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	// Nothing is backlogged, so even a cancelled context gets an answer at once.
	if err := srv.WaitDrained(done); err != nil {
		t.Fatalf("WaitDrained(cancelled) with nothing published: %v", err)
	}
	if err := srv.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.WaitDrained(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitDrained after Close = %v, want ErrClosed", err)
	}
	if _, err := srv.Backpressure(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Backpressure after Close = %v, want ErrClosed", err)
	}
}
