package herald

/*
#include "herald.h"
*/
import "C"

import (
	"context"
	"errors"
	"time"
)

const (
	// DefaultDrainTimeout is how long WaitDrained waits when its context has
	// no deadline.
	DefaultDrainTimeout = 5 * time.Second
	// drainSlice bounds one wait in the core, so that a cancelled context is
	// noticed soon and Close never waits long behind WaitDrained.
	drainSlice = 50 * time.Millisecond
)

// WaitDrained is flow control for a host that publishes faster than its
// clients read: it returns nil once every call made before it has been fanned
// out and every healthy client's backlog is under a quarter of its queue
// budget (Config.ClientQueueSize, Config.ClientQueueBytes). Call it between
// batches of a burst, or whenever Stats().Backpressure is true, instead of
// getting the clients evicted.
//
// A client being closed does not count; one that stopped reading counts until
// the write-stall rule evicts it (Config.HeartbeatTimeoutMS). The wait is
// bounded by ctx's deadline, or DefaultDrainTimeout when ctx has none; past
// it, or when ctx is cancelled, it returns an error wrapping ErrTimeout (and
// ctx's error, if any). It returns an error wrapping ErrClosed once the
// server is closed.
func (s *Server) WaitDrained(ctx context.Context) error {
	const op = "wait drained"
	if ctx == nil {
		ctx = context.Background()
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultDrainTimeout)
	}
	for {
		slice := min(time.Until(deadline), drainSlice)
		if slice < 0 {
			slice = 0
		}
		err := s.call(op, func(h *C.herald_server) Status {
			return Status(C.herald_wait_drained(h, C.uint32_t(slice.Milliseconds())))
		})
		if err == nil || !errors.Is(err, ErrTimeout) {
			return err
		}
		if ctx.Err() != nil {
			return goError(op, ErrTimeout, "clients still backlogged", ctx.Err())
		}
		if !time.Now().Before(deadline) {
			return err
		}
	}
}

// Backpressure reports whether the host should slow down: a healthy client is
// over half of its queue budget, or the publish queue is over half full. It
// is cheap (two counters in the core): check it after publishing and call
// WaitDrained while it is true.
func (s *Server) Backpressure() (bool, error) {
	var on C.int
	err := s.call("backpressure", func(h *C.herald_server) Status {
		return Status(C.herald_backpressure(h, &on))
	})
	return on != 0, err
}
