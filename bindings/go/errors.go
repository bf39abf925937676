package herald

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them; test with errors.Is.
var (
	// ErrNullArgument reports that the core received a NULL pointer. The
	// binding never passes NULL, so seeing it indicates a binding bug.
	ErrNullArgument = errors.New("herald: null argument")
	// ErrInvalidUTF8 reports a string or payload that is not valid UTF-8.
	ErrInvalidUTF8 = errors.New("herald: invalid UTF-8")
	// ErrInvalidJSON reports a payload that is not valid JSON, does not encode
	// to JSON, or is not a JSON object.
	ErrInvalidJSON = errors.New("herald: invalid JSON")
	// ErrInvalidArgument reports an argument the core rejected (for example an
	// empty session ID, or a string containing a NUL byte).
	ErrInvalidArgument = errors.New("herald: invalid argument")
	// ErrInvalidConfig reports a Config the core rejected at Start.
	ErrInvalidConfig = errors.New("herald: invalid config")
	// ErrUnknownClient reports that Send named a client that is not connected.
	ErrUnknownClient = errors.New("herald: unknown client")
	// ErrQueueFull reports that the core's bounded queue rejected a message;
	// the message was not delivered and the call may be retried later.
	ErrQueueFull = errors.New("herald: queue full")
	// ErrLimit reports that a configured bound is reached, for example a
	// publication to a channel that does not exist yet while the server holds
	// Config.MaxChannels channels. Nothing was queued; unlike ErrQueueFull it
	// does not pass by itself (channels are reclaimed once they have no
	// subscribers and no history left).
	ErrLimit = errors.New("herald: limit reached")
	// ErrUnavailable reports that the broker (Redis) did not take a
	// publication: it is unreachable, or did not confirm in time (then the
	// publication may have been made). Never OK-and-lost.
	ErrUnavailable = errors.New("herald: broker unavailable")
	// ErrIO reports an I/O failure in the core, such as a port already in use
	// at Start.
	ErrIO = errors.New("herald: I/O error")
	// ErrTimeout reports that an operation did not finish in time. From Close
	// it means the core had to force the shutdown; the server is stopped
	// nevertheless.
	ErrTimeout = errors.New("herald: timeout")
	// ErrClosed reports a call on a Server that has been closed (or on a nil
	// *Server), including a second call to Close.
	ErrClosed = errors.New("herald: server closed")
	// ErrPanic reports that the core caught an internal panic.
	ErrPanic = errors.New("herald: internal panic in core")
	// ErrUnknown wraps status codes this version of the binding does not know.
	ErrUnknown = errors.New("herald: unknown error")
)

// Status is a herald_status code of the core's C ABI.
type Status int

// The herald_status codes of the core's C ABI (include/herald.h).
const (
	StatusOK              Status = 0
	StatusNullArgument    Status = 1
	StatusInvalidUTF8     Status = 2
	StatusInvalidJSON     Status = 3
	StatusInvalidArgument Status = 4
	StatusInvalidConfig   Status = 5
	StatusInvalidHandle   Status = 6
	StatusUnknownClient   Status = 7
	StatusQueueFull       Status = 8
	StatusIO              Status = 9
	StatusTimeout         Status = 10
	StatusStopped         Status = 11
	StatusPanic           Status = 12
	StatusLimit           Status = 13
	StatusUnavailable     Status = 14
)

var statusNames = map[Status]string{
	StatusOK:              "HERALD_OK",
	StatusNullArgument:    "HERALD_ERR_NULL_ARGUMENT",
	StatusInvalidUTF8:     "HERALD_ERR_INVALID_UTF8",
	StatusInvalidJSON:     "HERALD_ERR_INVALID_JSON",
	StatusInvalidArgument: "HERALD_ERR_INVALID_ARGUMENT",
	StatusInvalidConfig:   "HERALD_ERR_INVALID_CONFIG",
	StatusInvalidHandle:   "HERALD_ERR_INVALID_HANDLE",
	StatusUnknownClient:   "HERALD_ERR_UNKNOWN_CLIENT",
	StatusQueueFull:       "HERALD_ERR_QUEUE_FULL",
	StatusIO:              "HERALD_ERR_IO",
	StatusTimeout:         "HERALD_ERR_TIMEOUT",
	StatusStopped:         "HERALD_ERR_STOPPED",
	StatusPanic:           "HERALD_ERR_PANIC",
	StatusLimit:           "HERALD_ERR_LIMIT",
	StatusUnavailable:     "HERALD_ERR_UNAVAILABLE",
}

// String returns the C enumerator name, e.g. "HERALD_ERR_QUEUE_FULL".
func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("herald_status(%d)", int(s))
}

// sentinel maps a core status to the sentinel error it wraps. Both an
// invalid handle and a stopped server mean the Server is closed.
func (s Status) sentinel() error {
	switch s {
	case StatusNullArgument:
		return ErrNullArgument
	case StatusInvalidUTF8:
		return ErrInvalidUTF8
	case StatusInvalidJSON:
		return ErrInvalidJSON
	case StatusInvalidArgument:
		return ErrInvalidArgument
	case StatusInvalidConfig:
		return ErrInvalidConfig
	case StatusInvalidHandle, StatusStopped:
		return ErrClosed
	case StatusUnknownClient:
		return ErrUnknownClient
	case StatusQueueFull:
		return ErrQueueFull
	case StatusLimit:
		return ErrLimit
	case StatusUnavailable:
		return ErrUnavailable
	case StatusIO:
		return ErrIO
	case StatusTimeout:
		return ErrTimeout
	case StatusPanic:
		return ErrPanic
	default:
		return ErrUnknown
	}
}

// Error is the concrete type of every error returned by this package. It
// wraps one of the sentinel errors (see Unwrap) and carries the core's status
// code and message when the failure came from the core.
type Error struct {
	// Op is the Server method that failed, e.g. "publish" or "start".
	Op string
	// Status is the core's status code, or StatusOK when the failure was
	// detected by the Go binding before calling the core.
	Status Status
	// Message is the core's herald_last_error text, or the binding's own
	// explanation; it may be empty.
	Message string

	kind  error
	cause error
}

// Error formats the error as "herald: OP: KIND: MESSAGE[: CAUSE]".
func (e *Error) Error() string {
	kind := strings.TrimPrefix(e.kind.Error(), "herald: ")
	s := fmt.Sprintf("herald: %s: %s", e.Op, kind)
	switch {
	case e.Message == "":
	case strings.HasPrefix(e.Message, kind+":"):
		// The core's message already names the kind ("invalid config: ...").
		s = fmt.Sprintf("herald: %s: %s", e.Op, e.Message)
	default:
		s += ": " + e.Message
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

// Unwrap returns the sentinel error (ErrInvalidJSON, ErrClosed, ...), which
// makes errors.Is work, followed by the underlying Go error if there is one
// (for example the encoding/json error when a payload cannot be marshaled).
func (e *Error) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

// statusError builds the error for a non-OK status returned by the core.
func statusError(op string, st Status, msg string) error {
	return &Error{Op: op, Status: st, Message: msg, kind: st.sentinel()}
}

// goError builds an error detected on the Go side, before calling the core.
// cause may be nil.
func goError(op string, kind error, msg string, cause error) error {
	return &Error{Op: op, Message: msg, kind: kind, cause: cause}
}

// closedError is returned by every method of a closed Server.
func closedError(op string) error {
	return &Error{Op: op, kind: ErrClosed}
}
