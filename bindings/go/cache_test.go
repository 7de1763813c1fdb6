package rkl_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rkl-project/rkl/bindings/go"
)

// The fixed part of the prompts here (about 50 tokens to the simulator),
// and what follows it.
const (
	system = "You are a careful assistant running on a Rockchip board. Answer briefly and in " +
		"the user's language; say when you do not know. Keep numbers exact, name units. "
	question = "What is the NPU's peak throughput?"
)

// cacheModel generates instantly and writes small caches (64 bytes per token).
func cacheModel(t *testing.T, name string) string {
	return writeModel(t, name, "time_scale = 0\nkv_bytes_per_token = 64\nname = "+name+"\n")
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func saveCache(t *testing.T, m *rkl.Model, path, prompt string) rkl.CacheInfo {
	t.Helper()
	info, err := m.SaveCache(context.Background(), path, prompt)
	if err != nil {
		t.Fatalf("SaveCache: %v", err)
	}
	return info
}

func TestCacheSavedThenLoadedInAFreshModel(t *testing.T) {
	ctx := context.Background()
	modelPath := cacheModel(t, "model-a")
	path := filepath.Join(t.TempDir(), "system prompt ✓.rklcache")
	m := open(t, modelPath)

	text, cold, err := m.Complete(ctx, system+question)
	if err != nil || text != expected(system+question) {
		t.Fatalf("cold: %q %v", text, err)
	}

	start := time.Now()
	info := saveCache(t, m, path, system)
	st, err := os.Stat(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case info.Verdict != rkl.CacheValid || info.VerdictStatus != rkl.OK || info.VerdictMessage != "" || info.Err() != nil:
		t.Errorf("verdict %v %v %q", info.Verdict, info.VerdictStatus, info.VerdictMessage)
	case info.ManifestPath != path || info.FormatVersion != 1 || info.LibraryVersion != rkl.Version():
		t.Errorf("manifest %q, format %d, library %q", info.ManifestPath, info.FormatVersion, info.LibraryVersion)
	case info.ModelPath != modelPath || info.ModelSize != st.Size() || !info.ModelModTime.Equal(st.ModTime()):
		t.Errorf("model %q %d %v; file %d %v", info.ModelPath, info.ModelSize, info.ModelModTime, st.Size(), st.ModTime())
	case !hex32.MatchString(info.ModelFingerprint) || !hex32.MatchString(info.PromptHash) || !hex32.MatchString(info.PayloadChecksum):
		t.Errorf("hashes %q %q %q", info.ModelFingerprint, info.PromptHash, info.PayloadChecksum)
	case info.PromptBytes != len(system) || info.PromptPreview != system[:80] || info.Role != rkl.RoleUser || info.EnableThinking:
		t.Errorf("prompt %d %q %v %v", info.PromptBytes, info.PromptPreview, info.Role, info.EnableThinking)
	case info.ChatTemplate != nil || info.MaxContextLen != 0:
		t.Errorf("template %+v, context %d", info.ChatTemplate, info.MaxContextLen)
	case filepath.Dir(info.PayloadPath) != filepath.Dir(path) || info.Created.Before(start.Truncate(time.Second)) || time.Since(info.Created) > time.Minute:
		t.Errorf("payload %q, created %v", info.PayloadPath, info.Created)
	case info.SaveStats == nil || info.SaveStats.Tokens > 1:
		t.Errorf("save stats %+v", info.SaveStats)
	}
	if abi := os.Getenv("RKLLM_SIM_ABI"); abi != "" && info.RuntimeFamily != abi {
		t.Errorf("family %q, simulator %q", info.RuntimeFamily, abi)
	}
	if ps, err := os.Stat(info.PayloadPath); err != nil || ps.Size() != info.PayloadSize || info.PayloadSize <= 16 {
		t.Errorf("payload file %v %v, recorded %d", ps, err, info.PayloadSize)
	}
	if n, err := m.KVCacheTokens(); n != 0 || err != nil {
		t.Errorf("history after the save: %d %v", n, err)
	}

	// A fresh model loads it and prefills only the new part of the full prompt.
	fresh := open(t, modelPath)
	loaded, err := fresh.LoadCache(path)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Verdict != rkl.CacheValid || loaded.SaveStats != nil || loaded.PromptHash != info.PromptHash ||
		loaded.PayloadPath != info.PayloadPath || loaded.Created != info.Created {
		t.Errorf("loaded %+v\nsaved %+v", loaded, info)
	}
	if n, err := fresh.KVCacheTokens(); n < 20 || err != nil {
		t.Errorf("history after the load: %d %v", n, err)
	}
	for _, q := range []string{question, "And the memory?"} {
		text, warm, err := fresh.Complete(ctx, system+q)
		// The runtime saw only the continuation: the simulator's reply quotes it.
		if err != nil || text != expected(q) {
			t.Fatalf("warm: %q %v", text, err)
		}
		if warm.PrefillTokens <= 0 || warm.PrefillTokens*2 >= cold.PrefillTokens {
			t.Errorf("prefill %d tokens with the cache, %d without", warm.PrefillTokens, cold.PrefillTokens)
		}
	}

	// The prefix rule: only the full prompt, and nothing runs otherwise.
	for _, p := range []string{question, system, strings.Replace(system, "careful", "Careful", 1) + question} {
		if _, _, err := fresh.Complete(ctx, p); !errors.Is(err, rkl.ErrCacheMismatch) || !strings.Contains(err.Error(), "rkl_") {
			t.Errorf("prompt %.20q: %v", p, err)
		}
	}
	// No save while a cache is loaded.
	other := filepath.Join(t.TempDir(), "other.rklcache")
	if _, err := fresh.SaveCache(ctx, other, system); !errors.Is(err, rkl.ErrInvalidArgument) {
		t.Errorf("save while loaded: %v", err)
	}
	if _, err := os.Stat(other); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused save wrote %v", err)
	}

	// Released: plain prompts again, history empty; releasing twice is harmless.
	if err := fresh.ReleaseCache(); err != nil {
		t.Fatal(err)
	}
	if n, err := fresh.KVCacheTokens(); n != 0 || err != nil {
		t.Errorf("history after the release: %d %v", n, err)
	}
	if text, _, err := fresh.Complete(ctx, question); err != nil || text != expected(question) {
		t.Errorf("after release: %q %v", text, err)
	}
	if err := fresh.ReleaseCache(); err != nil {
		t.Error(err)
	}
	_ = fresh.Close()
	if _, err := fresh.LoadCache(path); !errors.Is(err, rkl.ErrBadHandle) {
		t.Errorf("load after close: %v", err)
	}
}

func TestCacheRecordsTemplateRoleAndThinking(t *testing.T) {
	m := open(t, cacheModel(t, "template"), rkl.WithMaxContextLen(1024))
	if err := m.SetChatTemplate("Be brief ✓", "<u>", "</u>"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tool.rklcache")
	info, err := m.SaveCacheRequest(context.Background(), path, rkl.Request{Prompt: system, Role: rkl.RoleTool, EnableThinking: true, MaxNewTokens: 50})
	if err != nil {
		t.Fatal(err)
	}
	want := rkl.ChatTemplate{System: "Be brief ✓", Prefix: "<u>", Postfix: "</u>"}
	if info.ChatTemplate == nil || *info.ChatTemplate != want || info.Role != rkl.RoleTool || !info.EnableThinking || info.MaxContextLen != 1024 {
		t.Errorf("%+v", info)
	}
	seen, err := rkl.InspectCache(path)
	if err != nil || seen.ChatTemplate == nil || *seen.ChatTemplate != want || seen.Role != rkl.RoleTool || seen.SaveStats != nil {
		t.Errorf("inspect: %+v %v", seen, err)
	}
	if _, err := m.SaveCacheRequest(context.Background(), path, rkl.Request{Prompt: system, Lora: "x"}); !errors.Is(err, rkl.ErrInvalidArgument) {
		t.Errorf("lora: %v", err)
	}
	if _, err := m.SaveCache(context.Background(), path, ""); !errors.Is(err, rkl.ErrInvalidArgument) {
		t.Errorf("empty prompt: %v", err)
	}
	if _, err := m.SaveCache(context.Background(), filepath.Join(t.TempDir(), "no", "dir.rklcache"), system); !errors.Is(err, rkl.ErrIO) {
		t.Errorf("missing directory: %v", err)
	}
	if _, err := m.SaveCache(context.Background(), path+"\x00x", system); !errors.Is(err, rkl.ErrInvalidArgument) {
		t.Errorf("NUL in path: %v", err)
	}
	if again, err := rkl.InspectCache(path); err != nil || again.PromptHash != info.PromptHash {
		t.Errorf("the refused saves touched the cache: %v", err)
	}
}

// copyCache copies a cache (manifest and payload) into a new directory.
func copyCache(t *testing.T, info rkl.CacheInfo) (manifest, payload string) {
	t.Helper()
	dir := t.TempDir()
	for _, from := range []string{info.ManifestPath, info.PayloadPath} {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(from)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, filepath.Base(info.ManifestPath)), filepath.Join(dir, filepath.Base(info.PayloadPath))
}

func TestInspectAndLoadReportEachDamage(t *testing.T) {
	modelPath := cacheModel(t, "damage")
	m := open(t, modelPath)
	good := saveCache(t, m, filepath.Join(t.TempDir(), "good.rklcache"), system)

	if seen, err := rkl.InspectCache(good.ManifestPath); err != nil || seen.Verdict != rkl.CacheValid || seen.Err() != nil ||
		seen.PromptHash != good.PromptHash || seen.ModelFingerprint != good.ModelFingerprint || seen.SaveStats != nil {
		t.Fatalf("good: %+v %v", seen, err)
	}

	damages := []struct {
		name   string
		damage func(manifest, payload string) error
		want   rkl.Status
	}{
		{"truncated", func(_, p string) error { return os.Truncate(p, good.PayloadSize-1) }, rkl.ErrCacheTruncated},
		{"grown", func(_, p string) error { return os.Truncate(p, good.PayloadSize+1) }, rkl.ErrCacheTruncated},
		{"payload removed", func(_, p string) error { return os.Remove(p) }, rkl.ErrCacheTruncated},
		{"byte flipped", func(_, p string) error {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			data[len(data)/2] ^= 1
			return os.WriteFile(p, data, 0o644)
		}, rkl.ErrCacheCorrupt},
	}
	for _, d := range damages {
		manifest, payload := copyCache(t, good)
		if err := d.damage(manifest, payload); err != nil {
			t.Fatal(err)
		}
		seen, err := rkl.InspectCache(manifest)
		if err != nil || seen.Verdict != rkl.CacheInvalid || seen.VerdictStatus != d.want || seen.VerdictMessage == "" ||
			!errors.Is(seen.Err(), d.want) || seen.PromptHash != good.PromptHash {
			t.Errorf("%s: inspect %+v %v", d.name, seen, err)
		}
		if _, err := m.LoadCache(manifest); !errors.Is(err, d.want) || !strings.HasPrefix(err.Error(), "rkl: rkl_cache_load") {
			t.Errorf("%s: load %v, want %v", d.name, err, d.want.Name())
		}
	}
	// A failed load left the model as it was.
	if text, _, err := m.Complete(context.Background(), question); err != nil || text != expected(question) {
		t.Errorf("after failed loads: %q %v", text, err)
	}

	// Manifests that cannot be reported on: InspectCache fails too.
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.rklcache")
	newer := filepath.Join(dir, "newer.rklcache")
	manifest, err := os.ReadFile(good.ManifestPath)
	if err != nil {
		t.Fatal(err)
	}
	bumped := strings.Replace(string(manifest), `"rkl_prompt_cache": 1`, `"rkl_prompt_cache": 2`, 1)
	if bumped == string(manifest) {
		t.Fatalf("no format version in %s", manifest)
	}
	if err := os.WriteFile(garbage, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newer, []byte(bumped), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]rkl.Status{
		filepath.Join(dir, "missing.rklcache"): rkl.ErrCacheNotFound,
		garbage:                                rkl.ErrCacheInvalid,
		dir:                                    rkl.ErrCacheInvalid, // not a regular file
		newer:                                  rkl.ErrCacheVersion,
	} {
		if _, err := rkl.InspectCache(path); !errors.Is(err, want) {
			t.Errorf("inspect %s: %v, want %s", filepath.Base(path), err, want.Name())
		}
		if _, err := m.LoadCache(path); !errors.Is(err, want) {
			t.Errorf("load %s: %v, want %s", filepath.Base(path), err, want.Name())
		}
	}

	// The model file changed: stale; then gone.
	if err := os.WriteFile(modelPath, append(readFile(t, modelPath), "# edited\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	seen, err := rkl.InspectCache(good.ManifestPath)
	if err != nil || seen.Verdict != rkl.CacheStale || seen.VerdictStatus != rkl.ErrCacheMismatch || !strings.Contains(seen.VerdictMessage, "changed") {
		t.Errorf("stale: %+v %v", seen, err)
	}
	edited := open(t, modelPath)
	if _, err := edited.LoadCache(good.ManifestPath); !errors.Is(err, rkl.ErrCacheMismatch) {
		t.Errorf("load into the edited model: %v", err)
	}
	if err := os.Remove(modelPath); err != nil {
		t.Fatal(err)
	}
	if seen, err := rkl.InspectCache(good.ManifestPath); err != nil || seen.Verdict != rkl.CacheStale || !strings.Contains(seen.VerdictMessage, "gone") {
		t.Errorf("gone: %+v %v", seen, err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCacheOfAnotherModelIsRefused(t *testing.T) {
	a := open(t, cacheModel(t, "model-a"))
	b := open(t, cacheModel(t, "model-b"))
	info := saveCache(t, a, filepath.Join(t.TempDir(), "a.rklcache"), system)
	_, err := b.LoadCache(info.ManifestPath)
	var e *rkl.Error
	if !errors.As(err, &e) || e.Status != rkl.ErrCacheMismatch || !strings.Contains(e.Message, "model") {
		t.Fatalf("load into b: %#v", err)
	}
	// b has no cache: plain prompts work, full ones are not cut.
	if text, _, err := b.Complete(context.Background(), system+question); err != nil || text != expected(system+question) {
		t.Errorf("b after the refused load: %q %v", text, err)
	}
	// A copy of a's model file (another path, same content) fits.
	copied := filepath.Join(t.TempDir(), "copy.sim")
	if err := os.WriteFile(copied, readFile(t, info.ModelPath), 0o644); err != nil {
		t.Fatal(err)
	}
	c := open(t, copied)
	if _, err := c.LoadCache(info.ManifestPath); err != nil {
		t.Errorf("load into a copy of the model: %v", err)
	}
}

func TestSaveCacheWithACancelledContext(t *testing.T) {
	// Slow: about 10 ms per prompt token, so the save of the system prompt
	// takes over half a second unless it is stopped.
	modelPath := writeModel(t, "slow-save", "time_scale = 1\nprefill_us_per_token = 10000\ndecode_us_per_token = 1000\nkv_bytes_per_token = 64\n")
	m := open(t, modelPath)
	dir := t.TempDir()
	path := filepath.Join(dir, "c.rklcache")
	old := saveCache(t, m, path, "Old. ")

	// Cancelled before the call: nothing happens.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.SaveCache(ctx, filepath.Join(dir, "never.rklcache"), system); err != context.Canceled {
		t.Errorf("cancelled before: %v", err)
	}

	// Cancelled while it runs: aborted, the old cache is whole.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := m.SaveCache(ctx, path, system)
	took := time.Since(start)
	if !errors.Is(err, rkl.ErrAborted) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("cancelled during the save: %v", err)
	}
	if took > 400*time.Millisecond {
		t.Errorf("the save took %v after its context ended at 50 ms", took)
	}
	seen, err := rkl.InspectCache(path)
	if err != nil || seen.Verdict != rkl.CacheValid || seen.PromptHash != old.PromptHash {
		t.Errorf("old cache after the aborted save: %+v %v", seen, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 2 {
		t.Errorf("directory holds %d files, want the old manifest and payload: %v", len(entries), err)
	}

	// The model works on, and a save with a live context succeeds.
	if _, err := m.LoadCache(path); err != nil {
		t.Error(err)
	}
	if text, _, err := m.Complete(context.Background(), "Old. Q"); err != nil || text != expected("Q") {
		t.Errorf("after: %q %v", text, err)
	}
	_ = m.ReleaseCache()
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	if info, err := m.SaveCache(ctx, path, "New. "); err != nil || info.PromptBytes != 5 {
		t.Errorf("save with a live context: %v", err)
	}
}

func TestAutomaticCacheSavesThenHits(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "auto") // made by Open
	m := open(t, cacheModel(t, "auto"), rkl.WithCacheDir(dir), rkl.WithCacheMaxBytes(64<<20))

	// The first request saves the prefix's cache; the runtime sees only the question.
	var b strings.Builder
	stats, err := m.GenerateRequest(ctx, rkl.Request{Prompt: system + question, CachePrefix: system}, func(s string) error {
		b.WriteString(s)
		return nil
	})
	if err != nil || stats.CacheUse != rkl.CacheUseSaved || b.String() != expected(question) {
		t.Fatalf("first: %q %v %v", b.String(), stats.CacheUse, err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) == 0 {
		t.Errorf("cache directory: %d entries, %v", len(entries), err)
	}
	// A pull stream with the same prefix finds it.
	s, err := m.StreamRequest(ctx, rkl.Request{Prompt: system + "And the memory?", CachePrefix: system})
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	for s.Next() {
		b.WriteString(s.Text())
	}
	stats, err = s.Stats()
	_ = s.Close()
	if s.Err() != nil || err != nil || stats.CacheUse != rkl.CacheUseHit || b.String() != expected("And the memory?") {
		t.Errorf("second: %q %v %v %v", b.String(), stats.CacheUse, s.Err(), err)
	}
	if stats.CacheUse.String() != "hit" {
		t.Errorf("String: %q", stats.CacheUse.String())
	}
	// Without a prefix: none, and the whole prompt runs.
	text, stats, err := m.Complete(ctx, question)
	if err != nil || stats.CacheUse != rkl.CacheUseNone || text != expected(question) {
		t.Errorf("plain: %q %v %v", text, stats.CacheUse, err)
	}

	// A prefix that does not start the prompt is refused before anything runs.
	bad := rkl.Request{Prompt: question, CachePrefix: system}
	if _, err := m.GenerateRequest(ctx, bad, nil); !errors.Is(err, rkl.ErrInvalidArgument) || !strings.Contains(err.Error(), "prefix") {
		t.Errorf("not a prefix: %v", err)
	}
	if _, err := m.StreamRequest(ctx, bad); !errors.Is(err, rkl.ErrInvalidArgument) {
		t.Errorf("not a prefix (stream): %v", err)
	}
	// The whole prompt is no prefix either (librkl's check).
	if _, err := m.GenerateRequest(ctx, rkl.Request{Prompt: system, CachePrefix: system}, nil); !errors.Is(err, rkl.ErrInvalidArgument) {
		t.Errorf("the whole prompt: %v", err)
	}
	// A cap without a directory is refused, and so is a negative one.
	if _, err := rkl.Open(cacheModel(t, "auto-cap"), rkl.WithCacheMaxBytes(1)); !errors.Is(err, rkl.ErrInvalidArgument) {
		t.Errorf("cap without a directory: %v", err)
	}
	if _, err := rkl.Open(cacheModel(t, "auto-cap"), rkl.WithCacheDir(dir), rkl.WithCacheMaxBytes(-1)); !errors.Is(err, rkl.ErrInvalidArgument) {
		t.Errorf("negative cap: %v", err)
	}
}
