package herald

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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
		StatusLimit:           ErrLimit,
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
	if got := statusError("publish", StatusLimit, "channel table full").Error(); got != "herald: publish: limit reached: channel table full" {
		t.Errorf("Error() = %q", got)
	}
	if StatusQueueFull.String() != "HERALD_ERR_QUEUE_FULL" || StatusLimit.String() != "HERALD_ERR_LIMIT" || Status(77).String() != "herald_status(77)" {
		t.Error("Status.String")
	}
}

// TestStatusTableMatchesHeader keeps the Status constants, their names and
// their sentinels in step with the herald_status enum of include/herald.h.
func TestStatusTableMatchesHeader(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "include", "herald.h"))
	if err != nil {
		t.Fatal(err)
	}
	header := string(raw)
	start := strings.Index(header, "typedef enum herald_status")
	end := strings.Index(header[start:], "} herald_status;")
	if start < 0 || end < 0 {
		t.Fatal("include/herald.h declares no herald_status enum")
	}
	declared := map[Status]string{}
	for _, m := range regexp.MustCompile(`(HERALD_(?:OK|ERR_\w+)) = (\d+)`).FindAllStringSubmatch(header[start:start+end], -1) {
		n, _ := strconv.Atoi(m[2])
		declared[Status(n)] = m[1]
	}
	if declared[StatusLimit] != "HERALD_ERR_LIMIT" {
		t.Errorf("the header's status 13 is %q", declared[StatusLimit])
	}
	if len(declared) != len(statusNames) {
		t.Errorf("the header declares %d statuses, the binding names %d", len(declared), len(statusNames))
	}
	for st, name := range declared {
		if statusNames[st] != name {
			t.Errorf("status %d: header %s, binding %q", int(st), name, statusNames[st])
		}
		if st != StatusOK && st.sentinel() == ErrUnknown {
			t.Errorf("%s has no sentinel error", name)
		}
	}
}
