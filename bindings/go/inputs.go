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
	"math/bits"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

// Embeddings is a request's input as embedding rows instead of text
// (Request.Embeddings): Tokens rows of Dim floats (the model's embedding
// size), row after row, all finite; len(Values) must be Tokens*Dim.
type Embeddings struct {
	Values      []float32
	Tokens, Dim int
}

// Media is the images or the videos of a multimodal request
// (Request.Images, Request.Videos), as the vision encoder made them:
// Count items (the prompt holds one "<image>" or "<video>" marker per
// item), Frames frames per video (images: 0 or 1), Tokens rows per image
// or frame, Dim floats per row; len(Values) must be
// Count*max(Frames,1)*Tokens*Dim. Width and Height (pixels) are optional.
type Media struct {
	Values                     []float32
	Count, Frames, Tokens, Dim int
	Width, Height              int
}

// CrossAttention is the encoder state of a cross-attention model
// (WithCrossAttn) for a request: KCache and VCache of the same length (a
// multiple of the encoder tokens), one Mask value and one Positions entry
// per encoder token. The runtime keeps using the last state given until a
// request gives another.
type CrossAttention struct {
	KCache, VCache, Mask []float32
	Positions            []int32
}

// Tensor is what HiddenStates and Logits return: Tokens rows of Dim
// values, row after row, in Go memory (copied out of librkl's).
type Tensor struct {
	Values      []float32
	Tokens, Dim int
	Stats       Stats // the run's figures (no tokens are generated)
}

// Row is row i (a slice of Values), or nil when i is out of range.
func (t Tensor) Row(i int) []float32 {
	if i < 0 || i >= t.Tokens {
		return nil
	}
	return t.Values[i*t.Dim : (i+1)*t.Dim]
}

// cRequest is a request ready for rkl_go_call: the C structs (no Go
// pointers in them) and the Go slices whose first elements go to C as
// arguments. Passing them is allowed by cgo's pointer rules (they point to
// memory without Go pointers) and enough: librkl copies every array during
// the call and keeps no pointer to them after it returns, so nothing needs
// to outlive the call (the runtime's long-lived copy of the cross-attention
// state is librkl's own).
type cRequest struct {
	p    C.rkl_generate_params
	in   C.rkl_go_inputs
	strs []*C.char

	tokens, positions                   []int32
	embeddings, images, videos, k, v, m []float32
}

func (r *cRequest) free() { freeAll(r.strs) }

func i32p(s []int32) *C.int32_t {
	if len(s) == 0 {
		return nil
	}
	return (*C.int32_t)(unsafe.Pointer(&s[0]))
}

func f32p(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}

// run calls rkl_go_call with the request's arrays, the goroutine locked to
// its thread until the message is read (see call).
func (r *cRequest) run(op C.int, m *Model, path *C.char, out unsafe.Pointer, stats *C.rkl_stats) error {
	return call(func() C.rkl_status {
		return C.rkl_go_call(op, m.h, &r.p, &r.in, i32p(r.tokens), f32p(r.embeddings), f32p(r.images),
			f32p(r.videos), f32p(r.k), f32p(r.v), f32p(r.m), i32p(r.positions), path, out, stats)
	})
}

func invalid(fn, msg string) error {
	return &Error{Status: ErrInvalidArgument, Message: fn + ": " + msg}
}

// product multiplies non-negative sizes, failing on a negative one or an
// overflow of int.
func product(fn, what string, sizes ...int) (int, error) {
	n := 1
	for _, s := range sizes {
		if s < 0 {
			return 0, invalid(fn, what+": a size is negative ("+strconv.Itoa(s)+")")
		}
		hi, lo := bits.Mul64(uint64(n), uint64(s))
		if hi != 0 || lo > math.MaxInt {
			return 0, invalid(fn, what+": the sizes multiply to more than the largest int")
		}
		n = int(lo)
	}
	return n, nil
}

func size(n int) C.size_t { return C.size_t(n) }

// media checks m's shape against its values and fills the C struct.
func media(fn, what string, m *Media, dst *C.rkl_media_input) ([]float32, error) {
	if err := call(func() C.rkl_status { return C.rkl_media_input_init(dst, C.sizeof_rkl_media_input) }); err != nil {
		return nil, err
	}
	frames := m.Frames
	if frames == 0 {
		frames = 1
	}
	if m.Width < 0 || m.Height < 0 {
		return nil, invalid(fn, what+": a size is negative")
	}
	n, err := product(fn, what, m.Count, frames, m.Tokens, m.Dim)
	if err != nil {
		return nil, err
	}
	if len(m.Values) != n {
		return nil, invalid(fn, what+": "+strconv.Itoa(len(m.Values))+" values for "+strconv.Itoa(n)+
			" (count x frames x tokens x dim)")
	}
	dst.count, dst.frames, dst.tokens, dst.dim = size(m.Count), size(m.Frames), size(m.Tokens), size(m.Dim)
	dst.width, dst.height = size(m.Width), size(m.Height)
	return m.Values, nil
}

// inputs fills r's input fields from req, checking what C cannot: that each
// slice holds as many values as its shape says.
func (r *cRequest) inputs(fn string, req *Request) error {
	kinds := 0
	if req.Tokens != nil {
		kinds++
		r.p.input_kind = C.RKL_INPUT_TOKENS
		r.tokens = req.Tokens
		r.p.n_tokens = size(len(req.Tokens))
	}
	if e := req.Embeddings; e != nil {
		kinds++
		r.p.input_kind = C.RKL_INPUT_EMBEDDINGS
		n, err := product(fn, "embeddings", e.Tokens, e.Dim)
		if err != nil {
			return err
		}
		if len(e.Values) != n {
			return invalid(fn, "embeddings: "+strconv.Itoa(len(e.Values))+" values for "+strconv.Itoa(e.Tokens)+
				" rows of "+strconv.Itoa(e.Dim))
		}
		r.embeddings = e.Values
		r.p.n_embedding_tokens, r.p.embedding_dim = size(e.Tokens), size(e.Dim)
	}
	if req.Images != nil || req.Videos != nil {
		kinds++
		r.p.input_kind = C.RKL_INPUT_MULTIMODAL
		var err error
		if req.Images != nil {
			r.in.has_images = 1
			if r.images, err = media(fn, "images", req.Images, &r.in.images); err != nil {
				return err
			}
		}
		if req.Videos != nil {
			r.in.has_videos = 1
			if r.videos, err = media(fn, "videos", req.Videos, &r.in.videos); err != nil {
				return err
			}
		}
	}
	if kinds > 1 {
		return invalid(fn, "a request has one input: Tokens, Embeddings, or Images/Videos")
	}
	if c := req.CrossAttn; c != nil {
		if len(c.KCache) != len(c.VCache) {
			return invalid(fn, "cross-attention: KCache and VCache differ in length")
		}
		if len(c.Mask) != len(c.Positions) {
			return invalid(fn, "cross-attention: Mask and Positions differ in length (one each per encoder token)")
		}
		if err := call(func() C.rkl_status {
			return C.rkl_cross_attn_params_init(&r.in.cross_attn, C.sizeof_rkl_cross_attn_params)
		}); err != nil {
			return err
		}
		r.in.has_cross_attn = 1
		r.in.cross_attn.cache_floats = size(len(c.KCache))
		r.in.cross_attn.num_tokens = size(len(c.Mask))
		r.k, r.v, r.m, r.positions = c.KCache, c.VCache, c.Mask, c.Positions
	}
	return nil
}

// abortOnCancel calls rkl_abort on m every 2 ms from when ctx is done until
// the returned stop is called (a blocking call with no handle of its own
// can only be stopped so; the model's other generations stop too).
func abortOnCancel(ctx context.Context, m *Model) (stop func()) {
	done := ctx.Done()
	if done == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-done:
		case <-quit:
			return
		}
		// Repeated until the call returns, so that it also lands when the
		// call's run has not started yet (queued).
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			C.rkl_abort(m.h)
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
	}
}

func (m *Model) tensor(ctx context.Context, fn string, op C.int, req Request) (Tensor, error) {
	if err := ctx.Err(); err != nil {
		return Tensor{}, err
	}
	r, err := requestParams(fn, req)
	if err != nil {
		return Tensor{}, err
	}
	defer r.free()
	var t C.rkl_tensor
	t.struct_size = C.sizeof_rkl_tensor
	var st C.rkl_stats
	st.struct_size = C.sizeof_rkl_stats
	stop := abortOnCancel(ctx, m)
	err = r.run(op, m, nil, unsafe.Pointer(&t), &st)
	stop()
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == ErrAborted && ctx.Err() != nil {
			e.ctx = ctx.Err()
		}
		return Tensor{}, err
	}
	defer C.rkl_tensor_free(&t)
	n := int(t.tokens) * int(t.dim)
	out := Tensor{Values: make([]float32, n), Tokens: int(t.tokens), Dim: int(t.dim), Stats: statsFrom(&st)}
	if n > 0 {
		copy(out.Values, unsafe.Slice((*float32)(unsafe.Pointer(t.data)), n))
	}
	return out, nil
}

// HiddenStates runs req and returns the last hidden layer of its input, one
// row of the model's embedding size per token (the vectors retrieval
// uses); nothing is generated. Every input kind works. Cancelling ctx stops
// it through Abort (the model's other generations stop too); the error then
// matches both ErrAborted and ctx.Err().
func (m *Model) HiddenStates(ctx context.Context, req Request) (Tensor, error) {
	return m.tensor(ctx, "rkl_hidden_states", C.RKL_GO_HIDDEN_STATES, req)
}

// Logits runs req and returns the logits the runtime computed (rows of the
// vocabulary's size; the runtime gives the last token's); see HiddenStates.
func (m *Model) Logits(ctx context.Context, req Request) (Tensor, error) {
	return m.tensor(ctx, "rkl_logits", C.RKL_GO_LOGITS, req)
}
