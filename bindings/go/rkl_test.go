package rkl_test

// Tests against the simulator (sim/README.md). The make rule sets
// RKL_RUNTIME to the simulator's librkllmrt.so and chooses RKLLM_SIM_ABI.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rkl-project/rkl/bindings/go"
)

// The simulator's reply is this template with {prompt} replaced.
const reply = "R[{prompt}] héllo wörld ✓ 🚀 日本語 ünïcödé, and a few more words to stream"

func expected(prompt string) string { return strings.ReplaceAll(reply, "{prompt}", prompt) }

func writeModel(t *testing.T, name, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".sim")
	body := "RKLLM-SIM 1\nreply = " + reply + "\n" + extra
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// fastModel generates instantly.
func fastModel(t *testing.T) string { return writeModel(t, "fast", "time_scale = 0\n") }

// slowModel takes about 4 ms per token (~50 tokens): long enough to stop mid-way.
func slowModel(t *testing.T) string {
	return writeModel(t, "slow", "time_scale = 1\nprefill_us_per_token = 1000\ndecode_us_per_token = 4000\n")
}

func open(t *testing.T, path string, opts ...rkl.Option) *rkl.Model {
	t.Helper()
	m, err := rkl.Open(path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestGenerateTextEqualsReply(t *testing.T) {
	m := open(t, fastModel(t))
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	if abi := os.Getenv("RKLLM_SIM_ABI"); abi != "" && info.Family != abi {
		t.Errorf("family %q, simulator ABI %q", info.Family, abi)
	}
	var pieces []string
	stats, err := m.Generate(context.Background(), "hello", func(s string) error {
		pieces = append(pieces, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pieces, ""); got != expected("hello") {
		t.Errorf("text %q, want %q", got, expected("hello"))
	}
	if stats.Finish != rkl.FinishEnd || stats.Tokens < len(pieces) || len(pieces) < 4 {
		t.Errorf("stats %+v after %d pieces", stats, len(pieces))
	}
	if _, err := m.Generate(context.Background(), "a\x00b", nil); !errors.Is(err, rkl.ErrInvalidArgument) {
		t.Errorf("NUL in prompt: %v", err)
	}
}

func TestStreamTextEqualsReply(t *testing.T) {
	m := open(t, fastModel(t))
	s, err := m.Stream(context.Background(), "streamed")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Stats(); !errors.Is(err, rkl.ErrInProgress) {
		t.Errorf("Stats before the end: %v", err)
	}
	var b strings.Builder
	for s.Next() {
		b.WriteString(s.Text())
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if b.String() != expected("streamed") {
		t.Errorf("text %q", b.String())
	}
	stats, err := s.Stats()
	if err != nil || stats.Finish != rkl.FinishEnd {
		t.Errorf("stats %+v, %v", stats, err)
	}
}

func TestMaxNewTokens(t *testing.T) {
	m := open(t, fastModel(t), rkl.WithMaxNewTokens(5))
	text, stats, err := m.Complete(context.Background(), "limit")
	if err != nil || stats.Finish != rkl.FinishMaxTokens || stats.Tokens != 5 || !strings.HasPrefix(expected("limit"), text) {
		t.Errorf("%q %+v %v", text, stats, err)
	}
	stats, err = m.GenerateRequest(context.Background(), rkl.Request{Prompt: "limit", MaxNewTokens: 3}, nil)
	if err != nil || stats.Tokens != 3 {
		t.Errorf("%+v %v", stats, err)
	}
}

// Per-request sampling: a 1.3 runtime samples the request with its set
// fields over the model's values (the simulator's {sampling} shows what the
// run got); a 1.2 runtime refuses them.
func TestRequestSampling(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sampling.sim")
	if err := os.WriteFile(path, []byte("RKLLM-SIM 1\nreply = [{sampling}]\ntime_scale = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := open(t, path, rkl.WithTopK(7))
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	generate := func(s *rkl.Sampling) (string, error) {
		var b strings.Builder
		_, err := m.GenerateRequest(context.Background(), rkl.Request{Prompt: "x", Sampling: s}, func(text string) error {
			b.WriteString(text)
			return nil
		})
		return b.String(), err
	}
	temperature := float32(0.25)
	own := &rkl.Sampling{Temperature: &temperature}
	switch info.Family {
	case "1.3":
		if text, err := generate(own); err != nil || !strings.Contains(text, "temperature=0.25") ||
			!strings.Contains(text, "top_k=7") || !strings.Contains(text, "top_p=0.9") {
			t.Errorf("generate: %q %v (want the set temperature over the model's top_k and the default top_p)", text, err)
		}
		s, err := m.StreamRequest(context.Background(), rkl.Request{Prompt: "x", Sampling: own})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for s.Next() {
			b.WriteString(s.Text())
		}
		_ = s.Close()
		if s.Err() != nil || !strings.Contains(b.String(), "temperature=0.25") {
			t.Errorf("stream: %q %v", b.String(), s.Err())
		}
	default:
		if _, err := generate(own); !errors.Is(err, rkl.ErrNotSupported) || !strings.Contains(err.Error(), "1.3") {
			t.Errorf("ABI %s: %v, want ErrNotSupported", info.Family, err)
		}
		if _, err := m.StreamRequest(context.Background(), rkl.Request{Prompt: "x", Sampling: own}); !errors.Is(err, rkl.ErrNotSupported) {
			t.Errorf("ABI %s, stream: %v, want ErrNotSupported", info.Family, err)
		}
	}
	if text, err := generate(nil); err != nil || text != "[init]" {
		t.Errorf("without sampling: %q %v", text, err)
	}
	topP, nan, mirostat := float32(2), float32(math.NaN()), 3
	for _, bad := range []*rkl.Sampling{{TopP: &topP}, {Temperature: &nan}, {Mirostat: &mirostat}} {
		if _, err := generate(bad); !errors.Is(err, rkl.ErrInvalidArgument) {
			t.Errorf("%+v: %v, want ErrInvalidArgument", *bad, err)
		}
	}
}

func TestCancelMidStream(t *testing.T) {
	// 20 ms a token: the cancel (a goroutine calling rkl_abort) must land
	// before the reply's 38 tokens are out, also on a loaded machine under
	// -race, where a goroutine can wait 150 ms for a core.
	m := open(t, writeModel(t, "cancel", "time_scale = 1\nprefill_us_per_token = 1000\ndecode_us_per_token = 20000\n"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got strings.Builder
	stats, err := m.Generate(ctx, "cancel me", func(s string) error {
		got.WriteString(s)
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if stats.Finish != rkl.FinishAborted || len(got.String()) >= len(expected("cancel me")) ||
		!strings.HasPrefix(expected("cancel me"), got.String()) {
		t.Errorf("stats %+v, text %q", stats, got.String())
	}
	// Only that generation stopped; the model goes on.
	if text, _, err := m.Complete(context.Background(), "next"); err != nil || text != expected("next") {
		t.Errorf("after cancel: %q %v", text, err)
	}
}

func TestCancelWhileQueuedAndDeadline(t *testing.T) {
	m := open(t, slowModel(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := m.Generate(ctx, "deadline", nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("err %v after %v", err, time.Since(start))
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := m.Stream(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("already cancelled: %v", err)
	}
}

func TestAbortStopsStreamAndGenerate(t *testing.T) {
	m := open(t, slowModel(t))
	s, err := m.Stream(context.Background(), "abort me")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	for s.Next() {
		if n++; n == 2 {
			if err := m.Abort(); err != nil {
				t.Fatal(err)
			}
		}
	}
	stats, err := s.Stats()
	if s.Err() != nil || err != nil || stats.Finish != rkl.FinishAborted {
		t.Errorf("%v %v %+v", s.Err(), err, stats)
	}

	// An error from fn aborts the generation and comes back as it is.
	stop := errors.New("enough")
	stats, err = m.Generate(context.Background(), "stop", func(string) error { return stop })
	if err != stop || stats.Finish != rkl.FinishAborted {
		t.Errorf("%v %+v", err, stats)
	}
}

func TestBadModelPath(t *testing.T) {
	_, err := rkl.Open("/nonexistent/model.rkllm")
	var e *rkl.Error
	if !errors.As(err, &e) || e.Status != rkl.ErrModelNotFound {
		t.Fatalf("err %#v", err)
	}
	if !errors.Is(err, rkl.ErrModelNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is fails for %v", err)
	}
	if !strings.Contains(err.Error(), "/nonexistent/model.rkllm") || !strings.HasPrefix(e.Message, "rkl_open") {
		t.Errorf("message %q", err.Error())
	}
	_, err = rkl.Open(fastModel(t), rkl.WithRuntime("/nonexistent/librkllmrt.so"))
	if !errors.Is(err, rkl.ErrRuntimeNotFound) || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("bad runtime: %v", err)
	}
	_, err = rkl.Open(fastModel(t) + "\x00.txt")
	if !errors.Is(err, rkl.ErrInvalidArgument) || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("NUL in path: %v", err)
	}
	_, err = rkl.Open(fastModel(t), rkl.WithTopP(1.5))
	if !errors.Is(err, rkl.ErrInvalidArgument) || !strings.Contains(err.Error(), "top_p") {
		t.Errorf("bad top_p: %v", err)
	}
}

func TestUseAfterClose(t *testing.T) {
	m, err := rkl.Open(fastModel(t))
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := m.Stream(context.Background(), "orphan")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	_, err = m.Generate(context.Background(), "x", nil)
	if !errors.Is(err, rkl.ErrBadHandle) || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Generate after Close: %v", err)
	}
	if _, err := m.Stream(context.Background(), "x"); !errors.Is(err, rkl.ErrBadHandle) {
		t.Errorf("Stream after Close: %v", err)
	}
	if err := m.Abort(); !errors.Is(err, rkl.ErrBadHandle) {
		t.Errorf("Abort after Close: %v", err)
	}
	if _, err := m.Info(); !errors.Is(err, rkl.ErrBadHandle) {
		t.Errorf("Info after Close: %v", err)
	}
	// The stream outlived its model: it ends, then is closed twice.
	for orphan.Next() {
	}
	if orphan.Err() != nil {
		t.Errorf("orphan: %v", orphan.Err())
	}
	orphan.Close()
	if err := orphan.Close(); err != nil {
		t.Errorf("second stream Close: %v", err)
	}
	if orphan.Next() {
		t.Error("Next after the end")
	}
	if _, err := orphan.Stats(); !errors.Is(err, rkl.ErrBadHandle) {
		t.Errorf("Stats after Close: %v", err)
	}
}

func TestCloseStreamFromAnotherGoroutine(t *testing.T) {
	m := open(t, slowModel(t))
	s, err := m.Stream(context.Background(), "closed under a reader")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Next() {
		t.Fatal(s.Err())
	}
	go s.Close()
	for s.Next() {
	}
	if s.Err() != nil && !errors.Is(s.Err(), rkl.ErrBadHandle) {
		t.Errorf("reader saw %v", s.Err())
	}
}

func TestConcurrentGenerationsAreSerialised(t *testing.T) {
	m := open(t, slowModel(t))
	prompts := []string{"first", "second"}
	texts := make([]string, len(prompts))
	stats := make([]rkl.Stats, len(prompts))
	errs := make([]error, len(prompts))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, p := range prompts {
		wg.Add(1)
		go func(i int, p string) {
			defer wg.Done()
			<-start
			texts[i], stats[i], errs[i] = m.Complete(context.Background(), p)
		}(i, p)
	}
	close(start)
	wg.Wait()
	for i, p := range prompts {
		if errs[i] != nil || texts[i] != expected(p) || stats[i].Finish != rkl.FinishEnd {
			t.Errorf("%s: %q %v %+v", p, texts[i], errs[i], stats[i])
		}
	}
	// One waited for the other: the later one queued about as long as the
	// earlier one ran.
	a, b := stats[0], stats[1]
	if a.Queue > b.Queue {
		a, b = b, a
	}
	if b.Queue < (a.Total-a.Queue)*7/10 {
		t.Errorf("not serialised? queued %v while the other ran %v", b.Queue, a.Total-a.Queue)
	}
}

func TestLoggerGetsMessagesThroughAHandle(t *testing.T) {
	var mu sync.Mutex
	var got []string
	err := rkl.SetLogger(rkl.LogDebug, func(level rkl.LogLevel, target, message string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprintf("%d %s %s", level, target, message))
	})
	if err != nil {
		t.Fatal(err)
	}
	m := open(t, fastModel(t))
	_ = m.Close()
	if err := rkl.SetLogger(rkl.LogOff, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(got, "\n"), "rkl_open") {
		t.Errorf("log: %q", got)
	}
	if err := rkl.SetLogger(rkl.LogLevel(9), func(rkl.LogLevel, string, string) {}); !errors.Is(err, rkl.ErrInvalidArgument) {
		t.Errorf("bad level: %v", err)
	}
}

func TestVersion(t *testing.T) {
	if v := rkl.Version(); strings.Count(v, ".") != 2 {
		t.Errorf("version %q", v)
	}
	if rkl.ErrBadHandle.Error() == "" {
		t.Error("empty status text")
	}
}
