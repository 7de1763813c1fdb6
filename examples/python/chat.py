"""Stream a model's replies to the terminal with the rkl package.

    python chat.py MODEL [PROMPT...]

Answers each PROMPT, then reads more prompts from standard input, one a
line, until its end. Ctrl-C stops the reply being written and exits.
Install the binding first: ``pip install /path/to/rkl/bindings/python``.
The runtime is found through RKL_RUNTIME, else as librkllmrt.so.
"""
import sys

import rkl


def main(argv: list) -> int:
    if len(argv) < 2:
        print("usage: chat.py MODEL [PROMPT...]", file=sys.stderr)
        return 2
    try:
        model = rkl.Model(argv[1])
    except rkl.RklError as e:
        print(e, file=sys.stderr)
        return 1
    with model:
        info = model.info
        print(f"rkl {rkl.version()}: {info.model_path} on runtime {info.runtime_path} (ABI {info.family})")

        def ask(prompt: str) -> bool:
            print(f"> {prompt}")
            try:
                with model.stream(prompt, keep_history=True) as stream:
                    for text in stream:
                        print(text, end="", flush=True)
                    print()
                    stats = stream.stats
            except KeyboardInterrupt:
                print("\n[stopped]")
                return False
            except rkl.RklError as e:
                print(f"\n{e}", file=sys.stderr)
                return False
            print(f"[{stats.tokens} tokens; first text after {stats.ttft_ms:.0f} ms; {stats.finish}]")
            return True

        for prompt in argv[2:]:
            if not ask(prompt):
                return 1
        if len(argv) > 2:
            return 0
        for line in sys.stdin:
            line = line.rstrip("\n")
            if line and not ask(line):
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
