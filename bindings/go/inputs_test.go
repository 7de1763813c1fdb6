package rkl_test

// Every input kind, both float outputs, cross-attention and media tags
// against the simulator (sim/README.md, "The reply" and "Infer modes").

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rkl-project/rkl/bindings/go"
)

const dim = 8

func inputsModel(t *testing.T, reply string, opts ...rkl.Option) *rkl.Model {
	t.Helper()
	path := filepath.Join(t.TempDir(), "inputs.sim")
	body := fmt.Sprintf("RKLLM-SIM 1\nreply = %s\nhidden_size = %d\nvocab_size = 50\ntime_scale = 0\n", reply, dim)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return open(t, path, opts...)
}

func fnv(b []byte) uint64 {
	h := uint64(0xcbf29ce484222325)
	for _, c := range b {
		h ^= uint64(c)
		h *= 0x100000001b3
	}
	return h
}

func f32bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

func i32bytes(v []int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return b
}

// simValue is the simulator's element [t][j] for input hash h.
func simValue(h uint64, t, j int) float32 {
	seed := uint32(h ^ (h >> 32))
	return float32((seed+(131*uint32(t)+7*uint32(j)))%2003)/1024 - 1001.0/1024
}

func floats(n int, salt float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i)*0.25 - salt
	}
	return v
}

func complete(t *testing.T, m *rkl.Model, req rkl.Request) (string, error) {
	t.Helper()
	var b strings.Builder
	_, err := m.GenerateRequest(context.Background(), req, func(s string) error {
		b.WriteString(s)
		return nil
	})
	return b.String(), err
}

func is13() bool { return os.Getenv("RKLLM_SIM_ABI") != "1.2" }

func TestTokensAndEmbeddingsArriveExactly(t *testing.T) {
	m := inputsModel(t, "[{input}|{prefill}]")
	ids := []int32{3, 1, 4, 1, 5}
	got, err := complete(t, m, rkl.Request{Tokens: ids})
	if want := fmt.Sprintf("[tokens n=5 fnv=%016x|5]", fnv(i32bytes(ids))); err != nil || got != want {
		t.Errorf("tokens: %q, %v; want %q", got, err, want)
	}
	rows := floats(3*dim, 1)
	got, err = complete(t, m, rkl.Request{Embeddings: &rkl.Embeddings{Values: rows, Tokens: 3, Dim: dim}})
	if want := fmt.Sprintf("[embed n=3 dim=8 fnv=%016x|3]", fnv(f32bytes(rows))); err != nil || got != want {
		t.Errorf("embeddings: %q, %v; want %q", got, err, want)
	}
}

func TestImagesArriveWithShapeAndTags(t *testing.T) {
	m := inputsModel(t, "[{input}|{prompt}]", rkl.WithImageTags("<|vs|>", "<|ve|>", "<|pad|>"))
	img := &rkl.Media{Values: floats(2*4*dim, 0.5), Count: 2, Tokens: 4, Dim: dim, Width: 448, Height: 336}
	prompt := "<image><image>Compare."
	got, err := complete(t, m, rkl.Request{Prompt: prompt, Images: img})
	h := fnv(append([]byte(prompt), f32bytes(img.Values)...))
	want := fmt.Sprintf("[multimodal images=2 tokens=4 size=448x336 tags=<|vs|>|<|ve|>|<|pad|> fnv=%016x|%s]", h, prompt)
	if err != nil || got != want {
		t.Errorf("images: %q, %v; want %q", got, err, want)
	}
	if _, err := complete(t, m, rkl.Request{Prompt: "<image>", Images: img}); !errors.Is(err, rkl.ErrInvalidArgument) {
		t.Errorf("one marker for two images: %v", err)
	}
}

func TestVideosNeed13(t *testing.T) {
	m := inputsModel(t, "[{input}]", rkl.WithVideoTags("<v>", "</v>", "<vp>"))
	vid := &rkl.Media{Values: floats(2*3*2*dim, 0), Count: 2, Frames: 3, Tokens: 2, Dim: dim, Width: 64, Height: 48}
	got, err := complete(t, m, rkl.Request{Prompt: "<video>and<video>", Videos: vid})
	if is13() {
		if err != nil || !strings.Contains(got, "videos=2 frames=3 frame_tokens=2 frame=64x48 video_tags=<v>|</v>|<vp>") {
			t.Errorf("videos: %q, %v", got, err)
		}
	} else if !errors.Is(err, rkl.ErrNotSupported) {
		t.Errorf("videos on 1.2: %q, %v; want ErrNotSupported", got, err)
	}
}

func TestHiddenStatesAndLogits(t *testing.T) {
	m := inputsModel(t, "never generated")
	ctx := context.Background()
	prompt := "Embed this sentence."
	h := fnv([]byte(prompt))
	hs, err := m.HiddenStates(ctx, rkl.Request{Prompt: prompt})
	if err != nil {
		t.Fatal(err)
	}
	// The prefilled text is "<user>" + prompt + "</user><assistant>", a token per 4 characters.
	tokens := (utf8.RuneCountInString("<user>"+prompt+"</user><assistant>") + 3) / 4
	if hs.Tokens != tokens || hs.Dim != dim || len(hs.Values) != tokens*dim {
		t.Fatalf("shape %d x %d (%d values), want %d x %d", hs.Tokens, hs.Dim, len(hs.Values), tokens, dim)
	}
	for _, tj := range [][2]int{{0, 0}, {0, dim - 1}, {tokens - 1, 3}} {
		if got, want := hs.Row(tj[0])[tj[1]], simValue(h, tj[0], tj[1]); got != want {
			t.Errorf("[%d][%d] = %v, want %v", tj[0], tj[1], got, want)
		}
	}
	if hs.Row(tokens) != nil || hs.Row(-1) != nil || hs.Stats.Tokens != 0 {
		t.Errorf("Row out of range, or tokens generated: %+v", hs.Stats)
	}
	lg, err := m.Logits(ctx, rkl.Request{Prompt: prompt})
	if err != nil || lg.Tokens != 1 || lg.Dim != 50 || lg.Values[49] != simValue(h, 0, 49) || lg.Values[0] != simValue(h, 0, 0) {
		t.Errorf("logits %d x %d, %v", lg.Tokens, lg.Dim, err)
	}
	// Embeddings in, embeddings out; and token ids.
	rows := floats(2*dim, 3)
	hs, err = m.HiddenStates(ctx, rkl.Request{Embeddings: &rkl.Embeddings{Values: rows, Tokens: 2, Dim: dim}})
	if err != nil || hs.Tokens != 2 || hs.Values[dim+1] != simValue(fnv(f32bytes(rows)), 1, 1) {
		t.Errorf("hidden states of embeddings: %+v, %v", hs, err)
	}
	ids := []int32{7, 8, 9}
	lg, err = m.Logits(ctx, rkl.Request{Tokens: ids})
	if err != nil || lg.Values[5] != simValue(fnv(i32bytes(ids)), 0, 5) {
		t.Errorf("logits of tokens: %v", err)
	}
	img := &rkl.Media{Values: floats(dim, 0), Count: 1, Tokens: 1, Dim: dim}
	if hs, err = m.HiddenStates(ctx, rkl.Request{Prompt: "<image>x", Images: img}); err != nil || hs.Dim != dim {
		t.Errorf("hidden states of an image: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.HiddenStates(cancelled, rkl.Request{Prompt: "x"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if got, err := complete(t, m, rkl.Request{Prompt: "x"}); got != "never generated" || err != nil {
		t.Errorf("generate afterwards: %q, %v", got, err)
	}
}

func TestCrossAttentionIsKeptUntilReplaced(t *testing.T) {
	m := inputsModel(t, "[{cross_attn}]", rkl.WithCrossAttn())
	c := &rkl.CrossAttention{KCache: floats(3*32, 0), VCache: floats(3*32, 1), Mask: floats(3, 0), Positions: []int32{0, 1, 2}}
	b := append(f32bytes(c.KCache), f32bytes(c.VCache)...)
	b = append(append(b, f32bytes(c.Mask)...), i32bytes(c.Positions)...)
	want := fmt.Sprintf("[tokens=3 fnv=%016x]", fnv(b))
	if got, err := complete(t, m, rkl.Request{Prompt: "x", CrossAttn: c}); got != want || err != nil {
		t.Errorf("cross attention: %q, %v; want %q", got, err, want)
	}
	if got, err := complete(t, m, rkl.Request{Prompt: "y"}); got != want || err != nil {
		t.Errorf("kept: %q, %v", got, err)
	}
	bad := &rkl.CrossAttention{KCache: c.KCache, VCache: c.VCache[:3], Mask: c.Mask, Positions: c.Positions}
	if _, err := complete(t, m, rkl.Request{Prompt: "x", CrossAttn: bad}); !errors.Is(err, rkl.ErrInvalidArgument) {
		t.Errorf("K and V of different lengths: %v", err)
	}
	plain := inputsModel(t, "x")
	if _, err := complete(t, plain, rkl.Request{Prompt: "x", CrossAttn: c}); !errors.Is(err, rkl.ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "use_cross_attn") {
		t.Errorf("without WithCrossAttn: %v", err)
	}
}

func TestBadShapesAreRefused(t *testing.T) {
	m := inputsModel(t, "x")
	ctx := context.Background()
	cases := []struct {
		why string
		req rkl.Request
	}{
		{"empty tokens", rkl.Request{Tokens: []int32{}}},
		{"negative id", rkl.Request{Tokens: []int32{1, -1}}},
		{"tokens with a prompt", rkl.Request{Prompt: "text", Tokens: []int32{1}}},
		{"short embeddings", rkl.Request{Embeddings: &rkl.Embeddings{Values: floats(7, 0), Tokens: 1, Dim: dim}}},
		{"nil embeddings", rkl.Request{Embeddings: &rkl.Embeddings{Tokens: 1, Dim: dim}}},
		{"empty embeddings", rkl.Request{Embeddings: &rkl.Embeddings{}}},
		{"overflowing rows", rkl.Request{Embeddings: &rkl.Embeddings{Values: floats(8, 0), Tokens: math.MaxInt, Dim: dim}}},
		{"negative dim", rkl.Request{Embeddings: &rkl.Embeddings{Values: floats(8, 0), Tokens: -1, Dim: -8}}},
		{"NaN", rkl.Request{Embeddings: &rkl.Embeddings{Values: []float32{float32(math.NaN()), 0, 0, 0, 0, 0, 0, 0}, Tokens: 1, Dim: dim}}},
		{"two inputs", rkl.Request{Tokens: []int32{1}, Embeddings: &rkl.Embeddings{Values: floats(8, 0), Tokens: 1, Dim: dim}}},
		{"nil image values", rkl.Request{Prompt: "<image>", Images: &rkl.Media{Count: 1, Tokens: 1, Dim: dim}}},
		{"overflowing images", rkl.Request{Prompt: "<image>", Images: &rkl.Media{Values: floats(8, 0), Count: math.MaxInt / 2, Tokens: 3, Dim: dim}}},
		{"image dim 0", rkl.Request{Prompt: "<image>", Images: &rkl.Media{Count: 1, Tokens: 1}}},
	}
	for _, c := range cases {
		if _, err := complete(t, m, c.req); !errors.Is(err, rkl.ErrInvalidArgument) && !errors.Is(err, rkl.ErrNullArgument) {
			t.Errorf("%s: generate gave %v", c.why, err)
		}
		if _, err := m.HiddenStates(ctx, c.req); !errors.Is(err, rkl.ErrInvalidArgument) && !errors.Is(err, rkl.ErrNullArgument) {
			t.Errorf("%s: hidden states gave %v", c.why, err)
		}
	}
}

func TestFunctionToolsReachTheRuntime(t *testing.T) {
	m := inputsModel(t, "{role}: {tools}")
	tools := `[{"name": "clock"}]`
	if err := m.SetFunctionTools("You may call tools ✓", tools, "<tool_response>"); err != nil {
		t.Fatal(err)
	}
	if got, err := complete(t, m, rkl.Request{Prompt: "what time is it?"}); err != nil || got != "user: "+tools {
		t.Errorf("user turn: %q %v", got, err)
	}
	if got, err := complete(t, m, rkl.Request{Prompt: `{"time": "12:00"}`, Role: rkl.RoleTool}); err != nil || got != "tool: "+tools {
		t.Errorf("tool turn: %q %v", got, err)
	}
	if err := m.SetFunctionTools("a\x00b", tools, ""); !errors.Is(err, rkl.ErrInvalidArgument) {
		t.Errorf("NUL in system: %v", err)
	}
}
