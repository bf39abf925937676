package herald

/*
#include <stdlib.h>
#include "herald.h"

// Defined in Go (logs_export.go).
extern void heraldGoLog(int level, char *target, char *message);

// The herald_log_callback the core calls, on its own log thread.
static void herald_go_log(void *user_data, enum herald_log_level level, const char *target, const char *message) {
	(void)user_data;
	heraldGoLog((int)level, (char *)target, (char *)message);
}

static enum herald_status herald_go_set_log_handler(int max_level, int install) {
	return herald_set_log_handler(max_level, install ? herald_go_log : NULL, NULL, NULL);
}
*/
import "C"

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// LevelTrace is the slog level of the core's trace records (below Debug).
const LevelTrace = slog.LevelDebug - 4

// logger receives the core's records; nil means slog.Default() at the time of each record.
var (
	logger     atomic.Pointer[slog.Logger]
	logsMu     sync.Mutex
	logsChosen bool
)

// RouteLogs sends the core's log records at level and above to logger (nil: slog.Default()),
// each with the attribute "target", the Rust module that logged (herald::connection …).
// The routing is process-wide, like the core's logging. The first Start routes to its
// Config.Logger (or slog.Default()) at the lowest level that logger has enabled, unless
// RouteLogs or StopLogs was called before.
func RouteLogs(l *slog.Logger, level slog.Level) error {
	logsMu.Lock()
	defer logsMu.Unlock()
	logger.Store(l)
	logsChosen = true
	return setLogHandler(coreLevel(level), true)
}

// StopLogs stops routing the core's log records.
func StopLogs() error {
	logsMu.Lock()
	defer logsMu.Unlock()
	logsChosen = true
	return setLogHandler(1, false)
}

// ensureLogs is called by Start: routes to l (nil: slog.Default()) unless the host
// chose already with RouteLogs or StopLogs.
func ensureLogs(l *slog.Logger) {
	logsMu.Lock()
	chosen := logsChosen
	logsMu.Unlock()
	if chosen {
		return
	}
	target := loggerOrDefault(l)
	level := slog.LevelError
	for _, candidate := range []slog.Level{LevelTrace, slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if target.Enabled(context.Background(), candidate) {
			level = candidate
			break
		}
	}
	// A process whose Rust part has its own tracing subscriber keeps it.
	_ = RouteLogs(l, level)
}

func setLogHandler(maxLevel int, install bool) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	flag := C.int(0)
	if install {
		flag = 1
	}
	st := Status(C.herald_go_set_log_handler(C.int(maxLevel), flag))
	if st != StatusOK {
		return statusError("route logs", st, C.GoString(C.herald_last_error()))
	}
	return nil
}

// coreLevel is the herald_log_level that delivers level and everything above it.
func coreLevel(level slog.Level) int {
	switch {
	case level <= LevelTrace:
		return 5
	case level <= slog.LevelDebug:
		return 4
	case level <= slog.LevelInfo:
		return 3
	case level <= slog.LevelWarn:
		return 2
	default:
		return 1
	}
}

var slogLevels = map[int]slog.Level{
	1: slog.LevelError, 2: slog.LevelWarn, 3: slog.LevelInfo, 4: slog.LevelDebug, 5: LevelTrace,
}

func logRecord(level int, target, message string) {
	l := logger.Load()
	if l == nil {
		l = slog.Default()
	}
	lvl, ok := slogLevels[level]
	if !ok {
		lvl = slog.LevelError
	}
	l.Log(context.Background(), lvl, strings.TrimSpace(message), slog.String("target", target))
}
