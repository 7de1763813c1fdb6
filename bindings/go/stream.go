package rkl

/*
#include <stdlib.h>
#include "rkl_go.h"
*/
import "C"

import (
	"context"
	"math"
	"strings"
	"sync"
	"unsafe"
)

// Role says who speaks in a request.
type Role int

// The roles of rkl.h.
const (
	RoleUser Role = 0 // a user message
	RoleTool Role = 1 // the result of a function call
)

// Request is one generation request; only Prompt is required.
type Request struct {
	Prompt         string
	MaxNewTokens   int  // 0: the model's limit (WithMaxNewTokens)
	KeepHistory    bool // keep this turn in the KV history
	EnableThinking bool // Qwen3-style thinking
	Role           Role
	Lora           string // a name given to LoadLora, or ""
	// CachePrefix marks the start of Prompt that stays the same from request
	// to request (a system prompt, say) for automatic prompt caching
	// (WithCacheDir): its KV state is saved the first time and reused by
	// every later request with the same prefix. It must be a prefix of
	// Prompt, shorter than it, ending on a character boundary (else
	// ErrInvalidArgument); "" marks none. Ignored without WithCacheDir.
	CachePrefix string
	// Sampling is this request's own sampling settings; nil: the model's.
	// A 1.3 runtime takes them; a 1.2 runtime refuses them with
	// ErrNotSupported (they are never ignored).
	Sampling *Sampling

	// The input: the Prompt text (default), or exactly one of Tokens,
	// Embeddings, or Images and/or Videos. A non-nil field is the input even
	// when empty (an empty one is refused).
	//
	// Tokens are token ids (each in 0..vocabulary size) fed instead of
	// text; Prompt must be "".
	Tokens []int32
	// Embeddings are embedding rows fed instead of text; Prompt must be "".
	Embeddings *Embeddings
	// Images (and Videos, runtime release 1.3; a 1.2 runtime gives
	// ErrNotSupported) make a multimodal request: Prompt holds one
	// "<image>" per image and one "<video>" per video, which the runtime
	// wraps in the tags of WithImageTags / WithVideoTags.
	Images, Videos *Media
	// CrossAttn is the encoder state of a cross-attention model (opened
	// WithCrossAttn), or nil.
	CrossAttn *CrossAttention
}

// Sampling holds sampling settings for one request (Request.Sampling). A
// nil field keeps the model's value: its Open option (WithTopK, ...), else
// the runtime's default. The ranges are those of the Open settings; a value
// out of range (or a NaN) fails the request with ErrInvalidArgument.
type Sampling struct {
	TopK             *int     // top-k sampling, >= 0; 0 disables it
	TopP             *float32 // nucleus sampling mass, 0..1
	Temperature      *float32 // >= 0
	RepeatPenalty    *float32 // >= 0
	FrequencyPenalty *float32 // -100..100
	PresencePenalty  *float32 // -100..100
	Mirostat         *int     // 0 off, 1 or 2
	MirostatTau      *float32 // mirostat target entropy, > 0
	MirostatEta      *float32 // mirostat learning rate, > 0
}

// samplingParams fills an rkl_sampling_params with s's set fields (the
// others stay unset), in C memory: the generate params that point to it go
// to C, so it must not be Go memory. Free it with C.free.
func samplingParams(fn string, s *Sampling) (*C.rkl_sampling_params, error) {
	p := (*C.rkl_sampling_params)(C.malloc(C.sizeof_rkl_sampling_params))
	if err := call(func() C.rkl_status { return C.rkl_sampling_params_init(p, C.sizeof_rkl_sampling_params) }); err != nil {
		C.free(unsafe.Pointer(p))
		return nil, err
	}
	// i32 never gives RKL_UNSET (INT32_MIN), so a set field stays set.
	if s.TopK != nil {
		p.top_k = i32(*s.TopK)
	}
	if s.Mirostat != nil {
		p.mirostat = i32(*s.Mirostat)
	}
	nan := ""
	set := func(dst *C.float, what string, v *float32) {
		if v == nil {
			return
		}
		if math.IsNaN(float64(*v)) && nan == "" {
			nan = what
		}
		*dst = C.float(*v)
	}
	set(&p.top_p, "top_p", s.TopP)
	set(&p.temperature, "temperature", s.Temperature)
	set(&p.repeat_penalty, "repeat_penalty", s.RepeatPenalty)
	set(&p.frequency_penalty, "frequency_penalty", s.FrequencyPenalty)
	set(&p.presence_penalty, "presence_penalty", s.PresencePenalty)
	set(&p.mirostat_tau, "mirostat_tau", s.MirostatTau)
	set(&p.mirostat_eta, "mirostat_eta", s.MirostatEta)
	if nan != "" {
		// NaN is how C marks a float unset: librkl would take the model's value.
		C.free(unsafe.Pointer(p))
		return nil, &Error{Status: ErrInvalidArgument, Message: fn + ": sampling " + nan + " is NaN"}
	}
	return p, nil
}

// requestParams fills rkl_generate_params and the input structs from req
// for the C function fn. Free the strings (and req.Sampling's C struct,
// which is among them) with r.free once the call has returned.
func requestParams(fn string, req Request) (*cRequest, error) {
	r := &cRequest{}
	p := &r.p
	if err := call(func() C.rkl_status { return C.rkl_generate_params_init(p, C.sizeof_rkl_generate_params) }); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(req.Prompt, req.CachePrefix) {
		return nil, &Error{Status: ErrInvalidArgument, Message: fn + ": the cache prefix is not a prefix of the prompt"}
	}
	if err := r.inputs(fn, &req); err != nil {
		return nil, err
	}
	strs, err := cStrings(fn, "prompt", req.Prompt, "lora", req.Lora)
	if err != nil {
		return nil, err
	}
	r.strs = strs
	p.cache_prefix_bytes = C.size_t(len(req.CachePrefix))
	if req.Prompt != "" || (req.Tokens == nil && req.Embeddings == nil) {
		p.prompt = strs[0]
	}
	if req.Lora != "" {
		p.lora = strs[1]
	}
	if req.MaxNewTokens < 0 || req.MaxNewTokens > 1<<31-1 {
		p.max_new_tokens = C.uint32_t(1 << 31) // out of range: refused with a message
	} else {
		p.max_new_tokens = C.uint32_t(req.MaxNewTokens)
	}
	p.role = C.int32_t(req.Role)
	p.keep_history = C.bool(req.KeepHistory)
	p.enable_thinking = C.bool(req.EnableThinking)
	if req.Sampling != nil {
		sp, err := samplingParams(fn, req.Sampling)
		if err != nil {
			r.free()
			return nil, err
		}
		p.sampling = sp
		r.strs = append(r.strs, (*C.char)(unsafe.Pointer(sp)))
	}
	return r, nil
}

// Stream is a generation read by pulling, like bufio.Scanner:
//
//	s, err := m.Stream(ctx, "Hello!")
//	if err != nil { ... }
//	defer s.Close()
//	for s.Next() {
//		fmt.Print(s.Text())
//	}
//	if err := s.Err(); err != nil { ... }
//
// Next, Text and Err belong to one goroutine; Abort and Close may be called
// from any goroutine.
type Stream struct {
	h    *C.rkl_stream // a token, like Model.h
	ctx  context.Context
	stop chan struct{} // closed by Close: ends the context watcher
	once sync.Once

	text string
	err  error
	done bool
}

// Stream starts a generation of a reply to prompt. Cancelling ctx aborts
// this generation (only this one).
func (m *Model) Stream(ctx context.Context, prompt string) (*Stream, error) {
	return m.StreamRequest(ctx, Request{Prompt: prompt})
}

// StreamRequest starts a generation for req; see Stream.
func (m *Model) StreamRequest(ctx context.Context, req Request) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := requestParams("rkl_stream_open", req)
	if err != nil {
		return nil, err
	}
	defer r.free()

	var h *C.rkl_stream
	if err := r.run(C.RKL_GO_STREAM_OPEN, m, nil, unsafe.Pointer(&h), nil); err != nil {
		return nil, err
	}
	s := &Stream{h: h, ctx: ctx, stop: make(chan struct{})}
	if done := ctx.Done(); done != nil {
		// rkl_stream_abort stops this generation only (rkl_abort would stop
		// every generation of the model, other goroutines' too).
		go func() {
			select {
			case <-done:
				C.rkl_stream_abort(h)
			case <-s.stop:
			}
		}()
	}
	return s, nil
}

// Next waits for the next piece of text and reports whether there is one.
// It returns false at the end of the generation or on failure (see Err).
func (s *Stream) Next() bool {
	if s.done {
		return false
	}
	var text *C.char
	var n C.size_t
	err := call(func() C.rkl_status { return C.rkl_stream_next(s.h, -1, &text, &n) })
	switch {
	case err != nil:
		s.err, s.done = err, true
	case text == nil:
		s.done = true
		if s.ctx.Err() != nil {
			s.err = s.ctx.Err() // ended because the context was cancelled
		}
	default:
		s.text = C.GoStringN(text, C.int(n)) // copied: the C text lives until the next call
		return true
	}
	s.text = ""
	return false
}

// Text is the piece of text Next found: whole UTF-8 characters.
func (s *Stream) Text() string { return s.text }

// Err is why Next returned false: nil at a normal end (also after Abort),
// the context's error when it was cancelled, else an *Error.
func (s *Stream) Err() error { return s.err }

// Stats are the generation's figures, once Next has returned false
// (before that: ErrInProgress).
func (s *Stream) Stats() (Stats, error) {
	var st C.rkl_stats
	st.struct_size = C.sizeof_rkl_stats
	err := call(func() C.rkl_status { return C.rkl_stream_stats(s.h, &st) })
	if err != nil {
		return Stats{}, err
	}
	return statsFrom(&st), nil
}

// Abort asks the generation to stop; Next then returns false.
func (s *Stream) Abort() error {
	return call(func() C.rkl_status { return C.rkl_stream_abort(s.h) })
}

// Close closes the stream, aborting an unfinished generation; a Next
// waiting in another goroutine returns false with ErrBadHandle. Closing
// twice is harmless.
func (s *Stream) Close() error {
	s.once.Do(func() { close(s.stop) })
	return call(func() C.rkl_status { return C.rkl_stream_close(s.h) })
}

// Generate generates a reply to prompt and hands each piece of text to fn,
// on this goroutine, as it arrives. Cancelling ctx aborts the generation;
// then Generate returns the context's error with the figures so far. An
// error from fn aborts the generation and is returned as it is.
func (m *Model) Generate(ctx context.Context, prompt string, fn func(string) error) (Stats, error) {
	return m.GenerateRequest(ctx, Request{Prompt: prompt}, fn)
}

// GenerateRequest is Generate for a full Request.
func (m *Model) GenerateRequest(ctx context.Context, req Request, fn func(string) error) (Stats, error) {
	s, err := m.StreamRequest(ctx, req)
	if err != nil {
		return Stats{}, err
	}
	defer s.Close()
	var fnErr error
	for s.Next() {
		if fn == nil || fnErr != nil {
			continue
		}
		if fnErr = fn(s.Text()); fnErr != nil {
			_ = s.Abort() // then read to the end (quickly) for the figures
		}
	}
	stats, statsErr := s.Stats()
	switch {
	case fnErr != nil:
		return stats, fnErr
	case s.Err() != nil:
		return stats, s.Err()
	default:
		return stats, statsErr
	}
}

// Complete generates a reply to prompt and returns it whole.
func (m *Model) Complete(ctx context.Context, prompt string) (string, Stats, error) {
	var b []byte
	stats, err := m.Generate(ctx, prompt, func(text string) error {
		b = append(b, text...)
		return nil
	})
	return string(b), stats, err
}
