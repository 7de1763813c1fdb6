// Package rkl runs LLMs on Rockchip NPUs through librkl, the crash-hardened
// C library around Rockchip's runtime (librkllmrt.so).
//
//	m, err := rkl.Open("qwen3-0.6b.rkllm")
//	if err != nil { ... }
//	defer m.Close()
//	stats, err := m.Generate(ctx, "Hello!", func(text string) error {
//		fmt.Print(text)
//		return nil
//	})
//
// Install with
//
//	go get github.com/rkl-project/rkl/bindings/go
//
// and import it under that path; the package is named rkl. It builds with
// cgo and finds librkl through pkg-config (`rkl.pc`, from `make install` of
// the C library, or PKG_CONFIG_PATH). The runtime is found by librkl:
// WithRuntime, else RKL_RUNTIME, else the loader.
//
// A *Model may be used from many goroutines at once: librkl runs their
// generations one at a time, in the order they were asked for. Cancelling
// the context of a generation stops that generation only.
//
// Prompt caches: SaveCache writes the KV state of a long fixed prompt,
// LoadCache checks and loads it (then every request gives the full prompt,
// starting with the cached one), InspectCache reads one without a model.
//
// WithIsolation runs the runtime in a worker process: a crash or hang of the
// runtime then fails the call in flight with ErrRuntimeCrashed or
// ErrRuntimeTimeout, and the model is reopened on the next call.
//
// Errors from librkl are *Error values that carry the Status and the
// library's message; errors.Is(err, rkl.ErrCacheCorrupt) and the like test
// the status (every status of rkl.h has its sentinel), and a missing model
// file or prompt cache also matches fs.ErrNotExist.
package rkl

/*
#cgo pkg-config: rkl
#include <stdlib.h>
#include <rkl.h>
*/
import "C"

import (
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// call runs f and turns its status into an error. The thread is locked for
// the call and the message read, because librkl keeps the last message per
// OS thread and a goroutine may otherwise move between the two.
func call(f func() C.rkl_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st := Status(f())
	if st == OK {
		return nil
	}
	return &Error{Status: st, Message: lastMessage(st)}
}

// lastMessage reads this thread's last error message (the thread must be
// locked since the failing call).
func lastMessage(st Status) string {
	n := C.rkl_last_error_message(nil, 0)
	if n == 0 {
		return st.Error()
	}
	buf := (*C.char)(C.malloc(n + 1))
	defer C.free(unsafe.Pointer(buf))
	C.rkl_last_error_message(buf, n+1)
	return C.GoStringN(buf, C.int(n))
}

// cString copies s for C, which would see it cut at a NUL byte: one inside
// is refused. Free the result with C.free.
func cString(fn, what, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, &Error{Status: ErrInvalidArgument, Message: fn + ": " + what + " contains a NUL byte"}
	}
	return C.CString(s), nil
}

// cStrings is cString for several strings; all or none are allocated.
func cStrings(fn string, whatAndValue ...string) ([]*C.char, error) {
	out := make([]*C.char, 0, len(whatAndValue)/2)
	for i := 0; i+1 < len(whatAndValue); i += 2 {
		cs, err := cString(fn, whatAndValue[i], whatAndValue[i+1])
		if err != nil {
			freeAll(out)
			return nil, err
		}
		out = append(out, cs)
	}
	return out, nil
}

func freeAll(strs []*C.char) {
	for _, cs := range strs {
		C.free(unsafe.Pointer(cs))
	}
}

// Version is the loaded librkl's version, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.rkl_version()) }

// ---------------------------------------------------------------- opening

// Option changes a setting of Open; settings not given keep the runtime's
// defaults. Values are range-checked by librkl.
type Option func(*config)

type config struct {
	runtimePath, runtimeABI string
	cacheDir                string
	imageTags, videoTags    *[3]string
	set                     []func(*C.rkl_open_params)
	err                     error // the first option refused before librkl sees it
}

func (c *config) fail(what string) {
	if c.err == nil {
		c.err = &Error{Status: ErrInvalidArgument, Message: "rkl_open: " + what}
	}
}

func (c *config) add(f func(*C.rkl_open_params)) { c.set = append(c.set, f) }

// i32 clamps n into int32 so that an out-of-range value stays out of range
// (and is refused by librkl) instead of wrapping around.
func i32(n int) C.int32_t {
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	if n < math.MinInt32+1 {
		return math.MinInt32 + 1
	}
	return C.int32_t(n)
}

// WithRuntime loads the runtime from path instead of RKL_RUNTIME or the loader's search.
func WithRuntime(path string) Option { return func(c *config) { c.runtimePath = path } }

// WithRuntimeABI names the runtime's ABI ("1.2", "1.3") instead of detecting it.
func WithRuntimeABI(abi string) Option { return func(c *config) { c.runtimeABI = abi } }

// WithMaxContextLen sets the context window in tokens.
func WithMaxContextLen(n int) Option {
	return func(c *config) { c.add(func(p *C.rkl_open_params) { p.max_context_len = i32(n) }) }
}

// WithMaxNewTokens limits the tokens generated per request (-1: no limit).
func WithMaxNewTokens(n int) Option {
	return func(c *config) { c.add(func(p *C.rkl_open_params) { p.max_new_tokens = i32(n) }) }
}

// WithTopK sets top-k sampling (0 disables it).
func WithTopK(k int) Option {
	return func(c *config) { c.add(func(p *C.rkl_open_params) { p.top_k = i32(k) }) }
}

// WithTopP sets nucleus sampling, 0..1.
func WithTopP(v float32) Option {
	return func(c *config) { c.add(func(p *C.rkl_open_params) { p.top_p = C.float(v) }) }
}

// WithTemperature sets the sampling temperature.
func WithTemperature(v float32) Option {
	return func(c *config) { c.add(func(p *C.rkl_open_params) { p.temperature = C.float(v) }) }
}

// WithRepeatPenalty sets the repetition penalty.
func WithRepeatPenalty(v float32) Option {
	return func(c *config) { c.add(func(p *C.rkl_open_params) { p.repeat_penalty = C.float(v) }) }
}

// WithCPUs sets how many CPU cores the runtime may use (1..8).
func WithCPUs(n int) Option {
	return func(c *config) { c.add(func(p *C.rkl_open_params) { p.enabled_cpus_num = i32(n) }) }
}

// WithIsolation runs the model's runtime in a worker process (rkl-host,
// installed beside librkl; RKL_HOST names another), so that a crash or hang
// of the runtime cannot take this process down: the call in flight fails
// with ErrRuntimeCrashed (or ErrRuntimeTimeout) and the model is reopened on
// the next call (see WithMaxRestarts, Restart). The API is the same in both
// modes. RKL_ISOLATED=1 in the environment turns it on for every model.
func WithIsolation() Option {
	return func(c *config) { c.add(func(p *C.rkl_open_params) { p.flags |= C.RKL_OPEN_ISOLATED }) }
}

// durationMs converts d for a uint32 millisecond field, rounding up so that
// a positive duration never becomes 0 (which means "default" to librkl).
func durationMs(c *config, what string, d time.Duration) C.uint32_t {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if d <= 0 || ms > math.MaxUint32 {
		c.fail(what + " must be positive and at most 2^32-1 ms, not " + d.String())
		return 0
	}
	return C.uint32_t(ms)
}

// WithCallTimeout fails a call or generation on which the runtime makes no
// progress (no token, no return) for d with ErrRuntimeTimeout. In isolation
// mode the worker is killed and the model reopened on the next call;
// in-process the runtime's thread stays stuck and every model on that
// runtime fails from then on. d must exceed the longest model load and
// prefill. Without it there is no limit.
func WithCallTimeout(d time.Duration) Option {
	return func(c *config) {
		ms := durationMs(c, "the call timeout", d)
		c.add(func(p *C.rkl_open_params) { p.call_timeout_ms = ms })
	}
}

// WithAbortGrace sets how long the runtime may take to stop after an abort
// (a cancelled context, Abort, Close) before isolation mode kills its worker
// (the generation still ends as aborted; the model restarts on the next
// call); in-process a late stop is logged and shows in Stats.AbortLatency.
// Default 2 s.
func WithAbortGrace(d time.Duration) Option {
	return func(c *config) {
		ms := durationMs(c, "the abort grace", d)
		c.add(func(p *C.rkl_open_params) { p.abort_grace_ms = ms })
	}
}

// WithMaxRestarts limits the automatic restarts of an isolated model's
// worker to n per minute (default 3); past them calls fail with
// ErrRuntimeCrashed until Restart. n <= 0: never restart automatically.
func WithMaxRestarts(n int) Option {
	return func(c *config) {
		v := i32(n)
		if n <= 0 {
			v = -1 // librkl: negative = never (0 would be its default, 3)
		}
		c.add(func(p *C.rkl_open_params) { p.max_restarts = v })
	}
}

// WithCacheDir turns on automatic prompt caching in dir (made, owner-only,
// when missing): a request that marks a stable prefix (Request.CachePrefix)
// finds the prefix's cache there, or saves it the first time, and every
// later request with the same prefix, in any process sharing dir, skips
// prefilling it. Caches are keyed by the model file's content, the runtime
// release, the chat template, the prefix and the settings that shape the KV
// state. Stats.CacheUse tells what a request did.
func WithCacheDir(dir string) Option { return func(c *config) { c.cacheDir = dir } }

// WithCacheMaxBytes caps the bytes the automatic caches in WithCacheDir's
// directory may take together; past it the least recently used are removed.
// Without it there is no cap; without WithCacheDir it is refused.
func WithCacheMaxBytes(n int64) Option {
	return func(c *config) {
		if n < 0 {
			c.fail("the cache byte cap must not be negative, not " + strconv.FormatInt(n, 10))
			return
		}
		c.add(func(p *C.rkl_open_params) { p.cache_max_bytes = C.uint64_t(n) })
	}
}

// WithCrossAttn opens a cross-attention model: requests then pass the
// encoder state in Request.CrossAttn (runtime 1.2.1 or later).
func WithCrossAttn() Option {
	return func(c *config) { c.add(func(p *C.rkl_open_params) { p.use_cross_attn = 1 }) }
}

// WithImageTags sets the strings the runtime puts before (start, e.g.
// "<|vision_start|>"), after (end) and inside (content, the placeholder
// token) each image of a multimodal prompt. Without it: the runtime's own
// on 1.2, empty strings on 1.3.
func WithImageTags(start, end, content string) Option {
	return func(c *config) { c.imageTags = &[3]string{start, end, content} }
}

// WithVideoTags is WithImageTags for videos (runtime release 1.3).
func WithVideoTags(start, end, content string) Option {
	return func(c *config) { c.videoTags = &[3]string{start, end, content} }
}

// Model is an open model. Its methods may be called from many goroutines.
type Model struct {
	// A token checked by librkl, not an address; it stays set after Close
	// (tokens are never reused), so later calls get ErrBadHandle from the
	// library instead of reaching freed memory.
	h *C.rkl_model
}

// Open loads the runtime (once per process) and opens a model file.
func Open(path string, opts ...Option) (*Model, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	var p C.rkl_open_params
	if err := call(func() C.rkl_status { return C.rkl_open_params_init(&p, C.sizeof_rkl_open_params) }); err != nil {
		return nil, err
	}
	strs, err := cStrings("rkl_open", "model path", path, "runtime path", cfg.runtimePath, "runtime ABI", cfg.runtimeABI,
		"cache directory", cfg.cacheDir)
	if err != nil {
		return nil, err
	}
	defer freeAll(strs)
	p.model_path = strs[0]
	if cfg.runtimePath != "" {
		p.runtime_path = strs[1]
	}
	if cfg.runtimeABI != "" {
		p.runtime_abi = strs[2]
	}
	if cfg.cacheDir != "" {
		p.cache_dir = strs[3]
	}
	for i, tags := range []*[3]string{cfg.imageTags, cfg.videoTags} {
		if tags == nil {
			continue
		}
		ts, err := cStrings("rkl_open", "tag", tags[0], "tag", tags[1], "tag", tags[2])
		if err != nil {
			return nil, err
		}
		defer freeAll(ts)
		if i == 0 {
			p.image_start, p.image_end, p.image_content = ts[0], ts[1], ts[2]
		} else {
			p.video_start, p.video_end, p.video_content = ts[0], ts[1], ts[2]
		}
	}
	for _, f := range cfg.set {
		f(&p)
	}
	var h *C.rkl_model
	if err := call(func() C.rkl_status { return C.rkl_open(&p, &h) }); err != nil {
		return nil, err
	}
	return &Model{h: h}, nil
}

// Close closes the model: its running and queued generations end as
// aborted, and later calls return ErrBadHandle. Closing twice is harmless.
// Streams opened on the model stay valid until their own Close.
func (m *Model) Close() error {
	return call(func() C.rkl_status { return C.rkl_close(m.h) })
}

// Restart stops an isolated model's worker process (its generations end as
// aborted, other calls in flight fail with ErrAborted), starts a new one and
// opens the model again, restoring the chat template, LoRA adapters and
// loaded prompt cache, not the KV history. It also resets the count of
// automatic restarts (WithMaxRestarts). An in-process model gives
// ErrNotSupported.
func (m *Model) Restart() error {
	return call(func() C.rkl_status { return C.rkl_model_restart(m.h) })
}

// Abort stops every running or queued generation of the model (streams
// included); they end with FinishAborted. To stop one generation, cancel
// its context or call its Stream's Abort.
func (m *Model) Abort() error {
	return call(func() C.rkl_status { return C.rkl_abort(m.h) })
}

// ModelInfo describes an open model.
type ModelInfo struct {
	ModelPath      string
	RuntimePath    string
	Family         string // "1.2" or "1.3"
	RuntimeVersion string // e.g. "1.2.3"; empty when unknown
}

// Info describes the model.
func (m *Model) Info() (ModelInfo, error) {
	var d C.rkl_model_details
	d.struct_size = C.sizeof_rkl_model_details
	var info ModelInfo
	err := call(func() C.rkl_status {
		st := C.rkl_model_info(m.h, &d)
		if st == C.RKL_OK {
			// Copied at once: the strings belong to the model.
			info = ModelInfo{C.GoString(d.model_path), C.GoString(d.runtime_path),
				C.GoString(d.family), C.GoString(d.runtime_version)}
		}
		return st
	})
	return info, err
}

// ClearHistory empties the KV history, so the next request starts afresh.
func (m *Model) ClearHistory(keepSystemPrompt bool) error {
	keep := C.int(0)
	if keepSystemPrompt {
		keep = 1
	}
	return call(func() C.rkl_status { return C.rkl_clear_history(m.h, keep) })
}

// KVCacheTokens is the number of tokens in the model's KV cache.
func (m *Model) KVCacheTokens() (int, error) {
	var n C.uint32_t
	err := call(func() C.rkl_status { return C.rkl_kv_cache_tokens(m.h, &n) })
	return int(n), err
}

// SetChatTemplate replaces the text before the first turn (system) and
// around each prompt (prefix + prompt + postfix).
func (m *Model) SetChatTemplate(system, prefix, postfix string) error {
	strs, err := cStrings("rkl_set_chat_template", "system", system, "prefix", prefix, "postfix", postfix)
	if err != nil {
		return err
	}
	defer freeAll(strs)
	return call(func() C.rkl_status { return C.rkl_set_chat_template(m.h, strs[0], strs[1], strs[2]) })
}

// SetFunctionTools sets up function calling: the system prompt, the tools
// as JSON (the model's schema) and the text that introduces a tool's
// answer; later requests with Role RoleTool carry tool results.
func (m *Model) SetFunctionTools(system, tools, toolResponse string) error {
	strs, err := cStrings("rkl_set_function_tools", "system", system, "tools", tools, "toolResponse", toolResponse)
	if err != nil {
		return err
	}
	defer freeAll(strs)
	return call(func() C.rkl_status { return C.rkl_set_function_tools(m.h, strs[0], strs[1], strs[2]) })
}

// LoadLora loads a LoRA adapter that requests select by name (Request.Lora).
func (m *Model) LoadLora(path, name string, scale float32) error {
	strs, err := cStrings("rkl_load_lora", "path", path, "name", name)
	if err != nil {
		return err
	}
	defer freeAll(strs)
	return call(func() C.rkl_status { return C.rkl_load_lora(m.h, strs[0], strs[1], C.float(scale)) })
}

// ---------------------------------------------------------------- results

// FinishReason tells why a generation ended.
type FinishReason int

// The finish reasons of rkl.h.
const (
	FinishEnd       FinishReason = 0 // the model finished its reply
	FinishMaxTokens FinishReason = 1 // the token limit was reached
	FinishAborted   FinishReason = 2 // Abort, a cancelled context, or Close
	FinishStopped   FinishReason = 3 // stopped by the receiver
	FinishError     FinishReason = 4 // the runtime reported an error
)

func (f FinishReason) String() string {
	switch f {
	case FinishEnd:
		return "end"
	case FinishMaxTokens:
		return "max-tokens"
	case FinishAborted:
		return "aborted"
	case FinishStopped:
		return "stopped"
	case FinishError:
		return "error"
	}
	return "unknown"
}

// CacheUse tells what automatic prompt caching (WithCacheDir) did for a
// request.
type CacheUse int

// The cache uses of rkl.h.
const (
	CacheUseNone  CacheUse = C.RKL_CACHE_USE_NONE  // no cache directory, or no Request.CachePrefix
	CacheUseHit   CacheUse = C.RKL_CACHE_USE_HIT   // the prefix's cache was found (loaded already, or from disk)
	CacheUseSaved CacheUse = C.RKL_CACHE_USE_SAVED // there was none: it was saved (one prefill of the prefix), then loaded
)

func (u CacheUse) String() string {
	switch u {
	case CacheUseNone:
		return "none"
	case CacheUseHit:
		return "hit"
	case CacheUseSaved:
		return "saved"
	}
	return "unknown"
}

// Stats are the figures of one generation.
type Stats struct {
	Finish        FinishReason
	Tokens        int           // tokens received from the runtime
	PrefillTokens int           // prompt tokens, as the runtime reported
	DecodeTokens  int           // generated tokens, as the runtime reported
	TTFT          time.Duration // request to first text
	Queue         time.Duration // waiting behind earlier calls
	Total         time.Duration // request to end
	Prefill       time.Duration // the runtime's prefill time
	Decode        time.Duration // the runtime's decode time
	MemoryMB      float64       // the runtime's peak memory
	// AbortLatency is the time from the first abort request to the end of
	// the run (0 when not aborted). Beyond the abort grace it means the
	// runtime stopped late, or its worker was killed to stop it.
	AbortLatency time.Duration
	// CacheUse is what automatic prompt caching did; with a cache saved or
	// loaded, TTFT and Total include that work.
	CacheUse CacheUse
}

func ms(v C.double) time.Duration { return time.Duration(float64(v) * float64(time.Millisecond)) }

func statsFrom(s *C.rkl_stats) Stats {
	st := Stats{
		Finish:        FinishReason(s.finish),
		Tokens:        int(s.tokens),
		PrefillTokens: int(s.prefill_tokens),
		DecodeTokens:  int(s.decode_tokens),
		TTFT:          ms(s.ttft_ms),
		Queue:         ms(s.queue_ms),
		Total:         ms(s.total_ms),
		Prefill:       ms(s.prefill_ms),
		Decode:        ms(s.decode_ms),
		MemoryMB:      float64(s.memory_mb),
		// A field librkl knows only from version 2 of the struct on (the
		// struct_size of a SaveCache's stats is the library's).
		AbortLatency: msIfCovered(s, unsafe.Offsetof(s.abort_ms), s.abort_ms),
	}
	// Version 3 of the struct.
	if covered(s, unsafe.Offsetof(s.cache_use), unsafe.Sizeof(s.cache_use)) {
		st.CacheUse = CacheUse(s.cache_use)
	}
	return st
}

// covered tells whether s's struct_size covers the field at offset.
func covered(s *C.rkl_stats, offset, size uintptr) bool {
	return uintptr(s.struct_size) >= offset+size
}

func msIfCovered(s *C.rkl_stats, offset uintptr, v C.double) time.Duration {
	if !covered(s, offset, unsafe.Sizeof(v)) {
		return 0
	}
	return ms(v)
}
