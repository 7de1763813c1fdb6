package rkl

/*
#include <stdlib.h>
#include "rkl_go.h"
*/
import "C"

import (
	"context"
	"errors"
	"math"
	"time"
	"unsafe"
)

// CacheVerdict is what librkl concluded about a prompt cache.
type CacheVerdict int

// The verdicts of rkl.h.
const (
	// CacheValid: the files are whole, the checksum matches and the model
	// file the manifest names is unchanged (LoadCache into that model would
	// accept it, unless the runtime release differs: see RuntimeFamily).
	CacheValid CacheVerdict = C.RKL_VERDICT_VALID
	// CacheStale: the files are whole, but the model file the manifest
	// names changed or is gone (VerdictStatus ErrCacheMismatch).
	CacheStale CacheVerdict = C.RKL_VERDICT_STALE
	// CacheInvalid: unusable; VerdictStatus is the status LoadCache would
	// fail with (ErrCacheTruncated, ErrCacheCorrupt, ...).
	CacheInvalid CacheVerdict = C.RKL_VERDICT_INVALID
)

func (v CacheVerdict) String() string {
	switch v {
	case CacheValid:
		return "valid"
	case CacheStale:
		return "stale"
	case CacheInvalid:
		return "invalid"
	}
	return "unknown"
}

// ChatTemplate is a chat template as SetChatTemplate sets it.
type ChatTemplate struct {
	System, Prefix, Postfix string
}

// CacheInfo is everything a prompt cache's manifest records, plus a verdict.
// It is a copy: nothing in it refers to librkl's memory.
type CacheInfo struct {
	Verdict        CacheVerdict
	VerdictStatus  Status // OK when valid; ErrCacheMismatch when stale; when invalid, LoadCache's status
	VerdictMessage string // why it is stale or invalid; empty when valid

	ManifestPath   string // the path given to the call
	FormatVersion  int    // the manifest's format (librkl 0.1 writes and reads 1)
	LibraryVersion string // the rkl that wrote it
	RuntimeFamily  string // the runtime release it needs: "1.2" or "1.3"
	RuntimeVersion string // the runtime's own version; empty when unknown
	MaxContextLen  int    // the model's context window when saved; 0 when left unset

	ModelPath        string    // the model file, as it was opened
	ModelSize        int64     // its size in bytes when the cache was saved
	ModelModTime     time.Time // its modification time then
	ModelFingerprint string    // what decides whether a model matches (not the path)

	PromptHash     string // hex xxh3-128 of the cached prompt
	PromptBytes    int    // its length: requests made while it is loaded are longer
	PromptPreview  string // its first characters (at most 80)
	Role           Role
	EnableThinking bool
	ChatTemplate   *ChatTemplate // the template set when saving; nil when none was

	PayloadPath     string // the runtime's payload file, beside the manifest
	PayloadSize     int64
	PayloadChecksum string
	Created         time.Time

	// SaveStats are the figures of the prefill run that wrote the cache:
	// set by SaveCache, nil from LoadCache and InspectCache.
	SaveStats *Stats
}

// Err is nil for a valid cache; else an *Error with VerdictStatus and
// VerdictMessage, the error LoadCache would return for it.
func (c CacheInfo) Err() error {
	if c.Verdict == CacheValid {
		return nil
	}
	return &Error{Status: c.VerdictStatus, Message: c.VerdictMessage}
}

func clampInt64(v C.uint64_t) int64 {
	if uint64(v) > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// cacheInfoFrom copies a filled rkl_cache_info into Go memory.
func cacheInfoFrom(ci *C.rkl_cache_info) CacheInfo {
	info := CacheInfo{
		Verdict:          CacheVerdict(ci.verdict),
		VerdictStatus:    Status(ci.verdict_status),
		VerdictMessage:   C.GoString(ci.verdict_message),
		ManifestPath:     C.GoString(ci.manifest_path),
		FormatVersion:    int(ci.format_version),
		LibraryVersion:   C.GoString(ci.library_version),
		RuntimeFamily:    C.GoString(ci.runtime_family),
		RuntimeVersion:   C.GoString(ci.runtime_version),
		MaxContextLen:    int(ci.max_context_len),
		ModelPath:        C.GoString(ci.model_path),
		ModelSize:        clampInt64(ci.model_size),
		ModelFingerprint: C.GoString(ci.model_fingerprint),
		PromptHash:       C.GoString(ci.prompt_hash),
		PromptBytes:      int(clampInt64(ci.prompt_bytes)),
		PromptPreview:    C.GoString(ci.prompt_preview),
		Role:             RoleUser,
		EnableThinking:   bool(ci.enable_thinking),
		PayloadPath:      C.GoString(ci.payload_path),
		PayloadSize:      clampInt64(ci.payload_size),
		PayloadChecksum:  C.GoString(ci.payload_checksum),
	}
	if C.GoString(ci.role) == "tool" {
		info.Role = RoleTool
	}
	if ns := clampInt64(ci.model_mtime_ns); ns > 0 {
		info.ModelModTime = time.Unix(0, ns)
	}
	if s := clampInt64(ci.created_unix); s > 0 {
		info.Created = time.Unix(s, 0)
	}
	if ci.has_chat_template {
		info.ChatTemplate = &ChatTemplate{C.GoString(ci.chat_system), C.GoString(ci.chat_prefix), C.GoString(ci.chat_postfix)}
	}
	if ci.save_stats != nil {
		st := statsFrom(ci.save_stats)
		info.SaveStats = &st
	}
	return info
}

// cacheCall runs a call that fills an rkl_cache_info, copies what it filled
// and frees it.
func cacheCall(f func(*C.rkl_cache_info) C.rkl_status) (CacheInfo, error) {
	// C memory, so that librkl's pointers are never stored in Go memory.
	ci := (*C.rkl_cache_info)(C.calloc(1, C.sizeof_rkl_cache_info))
	if ci == nil {
		panic("rkl: out of memory")
	}
	defer C.free(unsafe.Pointer(ci))
	ci.struct_size = C.sizeof_rkl_cache_info
	err := call(func() C.rkl_status { return f(ci) })
	// Always: after a failure the struct owns nothing and this does nothing.
	// (Not inside call: a successful free would clear the failure's message.)
	defer C.rkl_cache_info_free(ci)
	if err != nil {
		return CacheInfo{}, err
	}
	return cacheInfoFrom(ci), nil
}

// SaveCache saves a prompt cache of prompt at path (the manifest; the
// runtime's payload goes beside it, as "<name>.<checksum>.kv"): it prefills
// prompt through the model's chat template and writes the KV state. Later,
// LoadCache (on this or another Model of the same model file and runtime
// release) skips prefilling it.
//
// The model's KV history is emptied first and is empty afterwards. A save
// while a cache is loaded fails with ErrInvalidArgument (ReleaseCache
// first). The directory must exist (else ErrIO). A failure at any point,
// a crash included, leaves a previous cache at path whole.
//
// Cancelling ctx stops the save through Abort, which also stops the model's
// other generations (librkl has no way to stop only the save): SaveCache
// then returns an *Error that matches both ErrAborted and ctx.Err(), and
// nothing at path is damaged. A ctx cancelled before the call returns
// ctx.Err() and writes nothing.
func (m *Model) SaveCache(ctx context.Context, path, prompt string) (CacheInfo, error) {
	return m.SaveCacheRequest(ctx, path, Request{Prompt: prompt})
}

// SaveCacheRequest is SaveCache with the prompt's role and thinking flag
// (use those of the requests that will use the cache). MaxNewTokens,
// KeepHistory and CachePrefix are ignored; a Lora is refused with
// ErrInvalidArgument.
func (m *Model) SaveCacheRequest(ctx context.Context, path string, req Request) (CacheInfo, error) {
	if err := ctx.Err(); err != nil {
		return CacheInfo{}, err
	}
	r, err := requestParams("rkl_cache_save", req)
	if err != nil {
		return CacheInfo{}, err
	}
	defer r.free()
	cpath, err := cString("rkl_cache_save", "path", path)
	if err != nil {
		return CacheInfo{}, err
	}
	defer C.free(unsafe.Pointer(cpath))

	stop := abortOnCancel(ctx, m)
	info, err := cacheCall(func(ci *C.rkl_cache_info) C.rkl_status {
		return C.rkl_go_call(C.RKL_GO_CACHE_SAVE, m.h, &r.p, &r.in, i32p(r.tokens), f32p(r.embeddings),
			f32p(r.images), f32p(r.videos), f32p(r.k), f32p(r.v), f32p(r.m), i32p(r.positions), cpath,
			unsafe.Pointer(ci), nil)
	})
	stop()
	var e *Error
	if errors.As(err, &e) && e.Status == ErrAborted && ctx.Err() != nil {
		e.ctx = ctx.Err()
	}
	return info, err
}

// LoadCache checks the prompt cache at path and loads it into the model.
// Each problem has its own error, checked in this order: ErrCacheNotFound
// (also fs.ErrNotExist), ErrCacheInvalid, ErrCacheVersion,
// ErrCacheUntrusted (files others could have written; RKL_CACHE_TRUST=any
// allows them), ErrCacheTruncated, ErrCacheCorrupt, ErrCacheMismatch
// (another model file, by content not path, or another runtime release);
// the runtime sees the payload only after all of them passed. A load
// refused by these checks leaves the model as it was.
//
// While a cache is loaded, give every request the FULL prompt: the cached
// prompt byte for byte, then the new part. librkl sends the runtime only
// the new part; a prompt that does not start with the cached one, or is
// only the cached one, fails with ErrCacheMismatch and nothing runs. The
// cache stays loaded until ReleaseCache, ClearHistory, another LoadCache or
// Close (and survives Restart).
func (m *Model) LoadCache(path string) (CacheInfo, error) {
	cpath, err := cString("rkl_cache_load", "path", path)
	if err != nil {
		return CacheInfo{}, err
	}
	defer C.free(unsafe.Pointer(cpath))
	return cacheCall(func(ci *C.rkl_cache_info) C.rkl_status { return C.rkl_cache_load(m.h, cpath, ci) })
}

// ReleaseCache unloads the model's prompt cache and empties its KV history;
// requests give plain prompts again. Harmless when none is loaded.
func (m *Model) ReleaseCache() error {
	return call(func() C.rkl_status { return C.rkl_cache_release(m.h) })
}

// InspectCache reads the prompt cache at path without a model. A manifest
// that can be read gives a nil error whatever the verdict: a truncated or
// corrupt payload, or a changed model file, is reported in the CacheInfo
// (Verdict, VerdictStatus, VerdictMessage, Err) with every manifest field
// filled. Without a manifest to report on it fails: ErrCacheNotFound,
// ErrCacheInvalid, ErrCacheVersion, ErrIO. The verdict does not consider
// the runtime release (RuntimeFamily is the one the cache needs).
func InspectCache(path string) (CacheInfo, error) {
	cpath, err := cString("rkl_cache_inspect", "path", path)
	if err != nil {
		return CacheInfo{}, err
	}
	defer C.free(unsafe.Pointer(cpath))
	return cacheCall(func(ci *C.rkl_cache_info) C.rkl_status { return C.rkl_cache_inspect(cpath, ci) })
}
