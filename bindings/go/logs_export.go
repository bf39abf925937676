package herald

// Files named *_export.go hold the package's //exports: a file with //export may
// have only declarations in its cgo preamble, so the C side of the log callback
// is in logs.go.

/*
#include <stdint.h>
*/
import "C"

// heraldGoLog is the Go side of the core's herald_log_callback. It runs on
// Herald's log thread, one record at a time, never on a network thread.
//
//export heraldGoLog
func heraldGoLog(level C.int, target, message *C.char) {
	if target == nil || message == nil {
		return
	}
	logRecord(int(level), C.GoString(target), C.GoString(message))
}
