package rkl

/*
#include <rkl.h>
*/
import "C"

import (
	"io/fs"
	"strconv"
)

// Status is an rkl_status. The statuses other than OK are errors in their own
// right (sentinels for errors.Is); calls return them wrapped in *Error:
//
//	if errors.Is(err, rkl.ErrCacheCorrupt) { ... }
//
// The numbers are rkl.h's (taken from the header by cgo), fixed by its ABI.
type Status int32

// The statuses of rkl.h, in its order.
const (
	OK                    Status = C.RKL_OK                  // 0: success
	ErrInvalidArgument    Status = C.RKL_INVALID_ARGUMENT    // 1
	ErrModelNotFound      Status = C.RKL_MODEL_NOT_FOUND     // 2; also matches fs.ErrNotExist
	ErrRuntimeNotFound    Status = C.RKL_RUNTIME_NOT_FOUND   // 3; also: isolation mode found no rkl-host
	ErrRuntimeUnsupported Status = C.RKL_RUNTIME_UNSUPPORTED // 4
	ErrModelLoadFailed    Status = C.RKL_MODEL_LOAD_FAILED   // 5
	ErrRuntimeFailed      Status = C.RKL_RUNTIME_FAILED      // 6
	ErrClosed             Status = C.RKL_CLOSED              // 7
	ErrReentrant          Status = C.RKL_REENTRANT           // 8
	ErrNotSupported       Status = C.RKL_NOT_SUPPORTED       // 9
	ErrIO                 Status = C.RKL_IO                  // 10
	ErrBadHandle          Status = C.RKL_BAD_HANDLE          // 11
	ErrNullArgument       Status = C.RKL_NULL_ARGUMENT       // 12
	// ErrTimeout (13) is rkl_stream_next's "no text yet, call again"; this
	// package's streams wait without a limit and never return it. A hung
	// runtime is ErrRuntimeTimeout.
	ErrTimeout    Status = C.RKL_TIMEOUT     // 13
	ErrInProgress Status = C.RKL_IN_PROGRESS // 14: Stream.Stats before the end
	ErrPanic      Status = C.RKL_PANIC       // 15: a bug in librkl, caught
	// The prompt-cache statuses (LoadCache checks them in this order).
	ErrCacheNotFound  Status = C.RKL_CACHE_NOT_FOUND // 16; also matches fs.ErrNotExist
	ErrCacheInvalid   Status = C.RKL_CACHE_INVALID   // 17: manifest unreadable or malformed
	ErrCacheVersion   Status = C.RKL_CACHE_VERSION   // 18: manifest format unknown
	ErrCacheTruncated Status = C.RKL_CACHE_TRUNCATED // 19: payload missing or not its recorded size
	ErrCacheCorrupt   Status = C.RKL_CACHE_CORRUPT   // 20: payload does not match its checksum
	// ErrCacheMismatch (21): the cache belongs to another model or runtime
	// release, or a prompt does not continue the loaded cache's prompt.
	ErrCacheMismatch Status = C.RKL_CACHE_MISMATCH // 21
	ErrAborted       Status = C.RKL_ABORTED        // 22: e.g. SaveCache stopped by Abort, Close or its context
	// ErrRuntimeCrashed (23): isolation mode, the worker process running
	// the runtime died during the call (the message names the signal). The
	// model is reopened on the next call, or by Restart.
	ErrRuntimeCrashed Status = C.RKL_RUNTIME_CRASHED // 23
	// ErrRuntimeTimeout (24): the runtime made no progress for the call
	// timeout (WithCallTimeout). Isolation mode kills the worker and reopens
	// the model on the next call; in-process the runtime stays stuck.
	ErrRuntimeTimeout Status = C.RKL_RUNTIME_TIMEOUT // 24
	// ErrResourceExhausted (25): the system ran out of file descriptors,
	// memory, processes or threads (the message says which). The arguments
	// were fine; the call may succeed once resources are freed.
	ErrResourceExhausted Status = C.RKL_RESOURCE_EXHAUSTED // 25
	// ErrCacheUntrusted (26): a prompt-cache manifest or payload, or its
	// directory, belongs to another user or is writable by others (a
	// directory: without the sticky bit), so it is not handed to the
	// runtime; LoadCache checks it after ErrCacheVersion. The environment
	// variable RKL_CACHE_TRUST=any allows such caches.
	ErrCacheUntrusted Status = C.RKL_CACHE_UNTRUSTED // 26
)

// statusNames are the names of the statuses in rkl.h, by number.
var statusNames = [...]string{
	OK:                    "RKL_OK",
	ErrInvalidArgument:    "RKL_INVALID_ARGUMENT",
	ErrModelNotFound:      "RKL_MODEL_NOT_FOUND",
	ErrRuntimeNotFound:    "RKL_RUNTIME_NOT_FOUND",
	ErrRuntimeUnsupported: "RKL_RUNTIME_UNSUPPORTED",
	ErrModelLoadFailed:    "RKL_MODEL_LOAD_FAILED",
	ErrRuntimeFailed:      "RKL_RUNTIME_FAILED",
	ErrClosed:             "RKL_CLOSED",
	ErrReentrant:          "RKL_REENTRANT",
	ErrNotSupported:       "RKL_NOT_SUPPORTED",
	ErrIO:                 "RKL_IO",
	ErrBadHandle:          "RKL_BAD_HANDLE",
	ErrNullArgument:       "RKL_NULL_ARGUMENT",
	ErrTimeout:            "RKL_TIMEOUT",
	ErrInProgress:         "RKL_IN_PROGRESS",
	ErrPanic:              "RKL_PANIC",
	ErrCacheNotFound:      "RKL_CACHE_NOT_FOUND",
	ErrCacheInvalid:       "RKL_CACHE_INVALID",
	ErrCacheVersion:       "RKL_CACHE_VERSION",
	ErrCacheTruncated:     "RKL_CACHE_TRUNCATED",
	ErrCacheCorrupt:       "RKL_CACHE_CORRUPT",
	ErrCacheMismatch:      "RKL_CACHE_MISMATCH",
	ErrAborted:            "RKL_ABORTED",
	ErrRuntimeCrashed:     "RKL_RUNTIME_CRASHED",
	ErrRuntimeTimeout:     "RKL_RUNTIME_TIMEOUT",
	ErrResourceExhausted:  "RKL_RESOURCE_EXHAUSTED",
	ErrCacheUntrusted:     "RKL_CACHE_UNTRUSTED",
}

// Error returns the library's short description of the status
// (rkl_status_str), e.g. "prompt cache payload corrupt".
func (s Status) Error() string { return C.GoString(C.rkl_status_str(C.int32_t(s))) }

// String is the same as Error.
func (s Status) String() string { return s.Error() }

// Name is the status's name in rkl.h, e.g. "RKL_CACHE_CORRUPT", or
// "RKL_STATUS_<n>" for a number this package does not know.
func (s Status) Name() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "RKL_STATUS_" + strconv.Itoa(int(s))
}

// Error is a failed librkl call.
type Error struct {
	Status  Status // what kind of failure
	Message string // the library's message, which names the function

	// ctx is the context error that made the call stop (SaveCache), so
	// that the error matches both ErrAborted and context.Canceled.
	ctx error
}

func (e *Error) Error() string {
	if e.ctx != nil {
		return "rkl: " + e.Message + " (" + e.ctx.Error() + ")"
	}
	return "rkl: " + e.Message
}

// Unwrap gives the Status, so errors.Is(err, rkl.ErrModelNotFound) works.
func (e *Error) Unwrap() error { return e.Status }

// Is makes a missing model file or prompt cache match fs.ErrNotExist, as
// os.Open's error would, and a call stopped by its context match the
// context's error.
func (e *Error) Is(target error) bool {
	switch {
	case target == fs.ErrNotExist:
		return e.Status == ErrModelNotFound || e.Status == ErrCacheNotFound
	case e.ctx != nil:
		return target == e.ctx
	}
	return false
}
