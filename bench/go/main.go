// Per-token cost of the Go binding (bindings/go) against the simulator:
//
//	rklbench MODEL ROUNDS
//
// prints "BENCH {json}" lines (see bench/c/common.h) for Model.Generate with
// a callback and for the Stream pull loop.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/rkl-project/rkl/bindings/go"
)

func emit(name string, values []float64, tokens int) {
	line, _ := json.Marshal(map[string]any{"case": name, "unit": "ns/token", "values": values, "tokens": tokens})
	fmt.Printf("BENCH %s\n", line)
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: rklbench MODEL ROUNDS")
		os.Exit(2)
	}
	rounds, _ := strconv.Atoi(os.Args[2])
	model, err := rkl.Open(os.Args[1], rkl.WithMaxContextLen(16384))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer model.Close()
	ctx := context.Background()
	var bytes int
	generate := func() int {
		st, err := model.Generate(ctx, "bench", func(text string) error { bytes += len(text); return nil })
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		return st.Tokens
	}
	stream := func() int {
		s, err := model.Stream(ctx, "bench")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer s.Close()
		for s.Next() {
			bytes += len(s.Text())
		}
		st, err := s.Stats()
		if err == nil {
			err = s.Err()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		return st.Tokens
	}
	for _, c := range []struct {
		name string
		run  func() int
	}{{"go_generate_tokens", generate}, {"go_stream_tokens", stream}} {
		c.run() // warm-up
		values := make([]float64, rounds)
		tokens := 0
		for i := range values {
			start := time.Now()
			tokens = c.run()
			values[i] = float64(time.Since(start).Nanoseconds()) / float64(tokens)
		}
		emit(c.name, values, tokens)
	}
}
