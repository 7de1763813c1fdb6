package rkl_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/rkl-project/rkl/bindings/go"
)

// The prompt-cache snippet of README.md, compiled (not run: it needs a
// real model file).
func ExampleModel_LoadCache() {
	ctx := context.Background()
	system := "You are a helpful assistant on a Rockchip board. "
	question := "What is an NPU?"
	run := func() error {
		// README start
		m, err := rkl.Open("qwen3-0.6b.rkllm")
		if err != nil {
			return err
		}
		defer m.Close()
		if _, err := m.LoadCache("system.rklcache"); err != nil { // missing, stale or damaged: save it anew
			if _, err := m.SaveCache(ctx, "system.rklcache", system); err != nil {
				return err
			}
			if _, err := m.LoadCache("system.rklcache"); err != nil {
				return err
			}
		}
		text, stats, err := m.Complete(ctx, system+question) // the FULL prompt: only the question is prefilled
		// README end
		fmt.Println(text, stats.PrefillTokens)
		return err
	}
	if err := run(); err != nil {
		fmt.Println(err)
	}
}

// README.md's cache snippet is the body of the example above.
func TestReadmeCacheSnippetIsTheExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(readme), "### Prompt caches\n\n```go\n")
	snippet, _, found := strings.Cut(after, "```\n")
	_, body, _ := strings.Cut(string(example), "// README start\n")
	body, _, _ = strings.Cut(body, "\t\t// README end\n")
	body = strings.ReplaceAll(body, "\n\t\t", "\n")
	body = strings.TrimPrefix(body, "\t\t")
	if !found || snippet == "" || snippet != body {
		t.Errorf("README.md's snippet:\n%s\nthe example:\n%s", snippet, body)
	}
}
