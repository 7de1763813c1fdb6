package rkl

/*
#include <stdint.h>
#include "rkl_go.h"
*/
import "C"

import (
	"runtime/cgo"
	"sync"
)

// LogLevel is the severity of a log message, most severe first.
type LogLevel int

// The log levels of rkl.h.
const (
	LogOff LogLevel = iota
	LogError
	LogWarn
	LogInfo
	LogDebug
	LogTrace
)

// Logger receives librkl's log messages. It is called on whichever thread
// logs (librkl's own threads included), possibly from several at once, so it
// must be safe for concurrent use; it must not call this package's functions.
type Logger func(level LogLevel, target, message string)

var (
	logMu     sync.Mutex
	logHandle cgo.Handle // the installed Logger, 0 when none
)

// SetLogger routes librkl's messages at maxLevel and more severe to fn (nil
// removes it; then warnings go to stderr). When SetLogger returns, calls of
// the previous Logger have finished.
func SetLogger(maxLevel LogLevel, fn Logger) error {
	logMu.Lock()
	defer logMu.Unlock()
	var h cgo.Handle
	if fn != nil {
		// C keeps only this integer; the Go value stays in Go's handle table.
		h = cgo.NewHandle(fn)
	}
	err := call(func() C.rkl_status { return C.rkl_go_set_log(C.int32_t(maxLevel), C.uintptr_t(h)) })
	if err != nil {
		if h != 0 {
			h.Delete()
		}
		return err
	}
	if logHandle != 0 {
		logHandle.Delete() // librkl no longer calls it (see rkl_set_log_callback)
	}
	logHandle = h
	return nil
}

//export rklGoLog
func rklGoLog(level C.int32_t, target, message *C.char, handle C.uintptr_t) {
	defer func() { _ = recover() }() // a panic must not unwind into C
	fn := cgo.Handle(handle).Value().(Logger)
	fn(LogLevel(level), C.GoString(target), C.GoString(message))
}
