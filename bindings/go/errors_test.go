package herald

import (
	"errors"
	"testing"
)

func TestStatusMapping(t *testing.T) {
	want := map[Status]error{
		StatusNullArgument:    ErrNullArgument,
		StatusInvalidUTF8:     ErrInvalidUTF8,
		StatusInvalidJSON:     ErrInvalidJSON,
		StatusInvalidArgument: ErrInvalidArgument,
		StatusInvalidConfig:   ErrInvalidConfig,
		StatusInvalidHandle:   ErrClosed,
		StatusUnknownClient:   ErrUnknownClient,
		StatusQueueFull:       ErrQueueFull,
		StatusIO:              ErrIO,
		StatusTimeout:         ErrTimeout,
		StatusStopped:         ErrClosed,
		StatusPanic:           ErrPanic,
		Status(99):            ErrUnknown,
	}
	for st, sentinel := range want {
		err := statusError("op", st, "core says no")
		if !errors.Is(err, sentinel) {
			t.Errorf("%v: errors.Is(_, %v) = false", st, sentinel)
		}
		var herr *Error
		if !errors.As(err, &herr) || herr.Status != st || herr.Message != "core says no" || herr.Op != "op" {
			t.Errorf("%v: errors.As gives %#v", st, herr)
		}
	}
	if got := statusError("publish", StatusQueueFull, "full").Error(); got != "herald: publish: queue full: full" {
		t.Errorf("Error() = %q", got)
	}
	if got := statusError("start", StatusInvalidConfig, "invalid config: bad port").Error(); got != "herald: start: invalid config: bad port" {
		t.Errorf("Error() = %q", got)
	}
	if got := closedError("stats").Error(); got != "herald: stats: server closed" {
		t.Errorf("Error() = %q", got)
	}
	if StatusQueueFull.String() != "HERALD_ERR_QUEUE_FULL" || Status(77).String() != "herald_status(77)" {
		t.Error("Status.String")
	}
}
