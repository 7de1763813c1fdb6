// Command chat streams replies from a model to the terminal.
//
//	chat MODEL [PROMPT...]
//
// Answers each PROMPT, then reads more prompts from standard input, one a
// line, until its end. Ctrl-C stops the reply being written and exits.
// The runtime is found through RKL_RUNTIME, else as librkllmrt.so.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/rkl-project/rkl/bindings/go"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: chat MODEL [PROMPT...]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	m, err := rkl.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer m.Close()
	if info, err := m.Info(); err == nil {
		fmt.Printf("rkl %s: %s on runtime %s (ABI %s)\n", rkl.Version(), info.ModelPath, info.RuntimePath, info.Family)
	}

	ask := func(prompt string) bool {
		fmt.Printf("> %s\n", prompt)
		stats, err := m.GenerateRequest(ctx, rkl.Request{Prompt: prompt, KeepHistory: true}, func(text string) error {
			_, err := fmt.Print(text)
			return err
		})
		fmt.Println()
		if errors.Is(err, context.Canceled) {
			fmt.Println("[stopped]")
			return false
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return false
		}
		fmt.Printf("[%d tokens; first text after %d ms; %s]\n", stats.Tokens, stats.TTFT.Milliseconds(), stats.Finish)
		return true
	}

	for _, prompt := range os.Args[2:] {
		if !ask(prompt) {
			os.Exit(1)
		}
	}
	if len(os.Args) > 2 {
		return
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if line := in.Text(); line != "" && !ask(line) {
			os.Exit(1)
		}
	}
}
