package rkl_test

// Isolation mode: the runtime runs in rkl-host, which librkl finds in
// ../libexec from itself (the staged install) or through RKL_HOST.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rkl-project/rkl/bindings/go"
)

// rewrite replaces the model file at path; a worker started afterwards
// (a restart) reads the new one.
func rewrite(t *testing.T, path, extra string) {
	t.Helper()
	body := "RKLLM-SIM 1\nreply = " + reply + "\ntime_scale = 0\n" + extra
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestIsolatedCrashLeavesThisProcessAndTheModelAlive(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crashy.sim")
	rewrite(t, path, "")
	m := open(t, path, rkl.WithIsolation())
	if text, _, err := m.Complete(ctx, "isolated"); err != nil || text != expected("isolated") {
		t.Fatalf("isolated: %q %v", text, err)
	}

	// The next worker segfaults before its fourth token.
	rewrite(t, path, "fault = segv@token:3\n")
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	_, err := m.Generate(ctx, "crash", func(s string) error { got.WriteString(s); return nil })
	var e *rkl.Error
	if !errors.As(err, &e) || e.Status != rkl.ErrRuntimeCrashed || !strings.Contains(e.Message, "SIGSEGV") {
		t.Fatalf("crash: %#v", err)
	}
	if !strings.HasPrefix(expected("crash"), got.String()) || got.Len() >= len(expected("crash")) {
		t.Errorf("text before the crash: %q", got.String())
	}

	// The fault is gone from the file: the next call starts a new worker
	// by itself (automatic restarts: 3 a minute by default).
	rewrite(t, path, "")
	if text, _, err := m.Complete(ctx, "again"); err != nil || text != expected("again") {
		t.Errorf("after the crash: %q %v", text, err)
	}
}

func TestIsolatedTimeoutAndRestartPolicy(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hangs.sim")
	rewrite(t, path, "fault = hang@token:2\n")
	m := open(t, path, rkl.WithIsolation(), rkl.WithCallTimeout(200*time.Millisecond), rkl.WithMaxRestarts(0))
	start := time.Now()
	_, _, err := m.Complete(ctx, "hang")
	if !errors.Is(err, rkl.ErrRuntimeTimeout) || errors.Is(err, rkl.ErrTimeout) {
		t.Fatalf("hang: %v", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 3*time.Second {
		t.Errorf("timed out after %v, limit 200 ms", took)
	}

	// No automatic restarts: calls fail until Restart.
	rewrite(t, path, "")
	if _, _, err := m.Complete(ctx, "no restart"); !errors.Is(err, rkl.ErrRuntimeCrashed) {
		t.Errorf("without restart: %v", err)
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	if text, _, err := m.Complete(ctx, "restarted"); err != nil || text != expected("restarted") {
		t.Errorf("after Restart: %q %v", text, err)
	}

	// In-process models have no worker to restart.
	if err := open(t, fastModel(t)).Restart(); !errors.Is(err, rkl.ErrNotSupported) {
		t.Errorf("in-process Restart: %v", err)
	}
}

func TestIsolatedAbortGraceKillsALateWorker(t *testing.T) {
	// The runtime stops 5 s after an abort; the grace is 100 ms.
	path := writeModel(t, "late", "time_scale = 1\ndecode_us_per_token = 4000\nslow_abort_ms = 5000\n")
	m := open(t, path, rkl.WithIsolation(), rkl.WithAbortGrace(100*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	stats, err := m.Generate(ctx, "late", func(string) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) || stats.Finish != rkl.FinishAborted {
		t.Errorf("cancelled: %v %+v", err, stats)
	}
	if took := time.Since(start); took > 2*time.Second || stats.AbortLatency < 100*time.Millisecond || stats.AbortLatency > 2*time.Second {
		t.Errorf("returned after %v, abort latency %v (grace 100 ms, runtime's stop 5 s)", took, stats.AbortLatency)
	}
	// The killed worker is replaced on the next call.
	rewrite(t, path, "")
	if text, _, err := m.Complete(context.Background(), "next"); err != nil || text != expected("next") {
		t.Errorf("after the kill: %q %v", text, err)
	}
}

func TestIsolatedRestartKeepsTheLoadedCache(t *testing.T) {
	ctx := context.Background()
	m := open(t, cacheModel(t, "isolated-cache"), rkl.WithIsolation())
	path := filepath.Join(t.TempDir(), "c.rklcache")
	saveCache(t, m, path, system)
	if _, err := m.LoadCache(path); err != nil {
		t.Fatal(err)
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	if text, _, err := m.Complete(ctx, system+question); err != nil || text != expected(question) {
		t.Errorf("after Restart: %q %v", text, err)
	}
	if _, _, err := m.Complete(ctx, question); !errors.Is(err, rkl.ErrCacheMismatch) {
		t.Errorf("prefix rule after Restart: %v", err)
	}
}
