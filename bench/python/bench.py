"""Per-token cost of the Python binding (bindings/python) against the
simulator: ``bench.py MODEL ROUNDS`` prints "BENCH {json}" lines (see
bench/c/common.h) for Model.generate with a callback and for iterating a
Stream. Needs bindings/python/src on PYTHONPATH and RKL_LIBRARY."""
import json
import sys
import time

import rkl


def main() -> None:
    path, rounds = sys.argv[1], int(sys.argv[2])
    received = [0]

    def on_text(text: str) -> None:
        received[0] += len(text)

    with rkl.Model(path, max_context_len=16384) as model:
        def generate() -> int:
            return model.generate("bench", on_text).stats.tokens

        def stream() -> int:
            with model.stream("bench") as s:
                for text in s:
                    received[0] += len(text)
                return s.stats.tokens

        for name, run in (("py_generate_tokens", generate), ("py_stream_tokens", stream)):
            run()  # warm-up
            values, tokens = [], 0
            for _ in range(rounds):
                start = time.perf_counter_ns()
                tokens = run()
                values.append((time.perf_counter_ns() - start) / tokens)
            print("BENCH " + json.dumps({"case": name, "unit": "ns/token", "values": values, "tokens": tokens}),
                  flush=True)


if __name__ == "__main__":
    main()
