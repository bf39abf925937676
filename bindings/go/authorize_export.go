package herald

// Files named *_export.go hold the package's //exports. A file with //export may
// have only declarations in its cgo preamble, so the C side of the
// authorizer (the callback that calls heraldGoAuthorize) is in authorize.go.

/*
#include <stdint.h>
*/
import "C"

import "runtime/cgo"

// heraldGoAuthorize is the Go side of the core's herald_authorize_callback.
// It runs on a Herald worker thread; it copies the request (valid only
// during the call), hands it to a new goroutine and returns at once.
//
//export heraldGoAuthorize
func heraldGoAuthorize(handle C.uintptr_t, requestID C.uint64_t, requestJSON *C.char) {
	if requestJSON == nil {
		return
	}
	raw := []byte(C.GoString(requestJSON))
	authorize(cgo.Handle(handle), uint64(requestID), raw)
}

// heraldGoAuthorizerDropped is the Go side of the authorizer's
// herald_drop_callback: the core calls it once per installed handle, after
// the handle's last heraldGoAuthorize call (when the authorizer is replaced
// or cleared, when the server stops, or at once if installing it failed).
//
//export heraldGoAuthorizerDropped
func heraldGoAuthorizerDropped(handle C.uintptr_t) {
	releaseAuthHandle(cgo.Handle(handle))
}
