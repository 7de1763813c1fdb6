//! `rkl`: the command line of the rkl library.
//!
//!   rkl info [MODEL] [--json]          the runtime, its release, what rkl supports on it, the board
//!   rkl run MODEL PROMPT               one reply, streamed to stdout
//!   rkl chat MODEL                     a streaming REPL with history (/reset, /exit)
//!   rkl bench MODEL [--runs N] [--json]  TTFT, prefill and decode tokens/s, with and without a prompt cache
//!   rkl cache list|show|clean|prune|save  prompt caches (the same as `rkl-cache`, plus save)
//!   rkl serve [MODEL...] [--config FILE]  an OpenAI-compatible HTTP server
//!
//! Every command that opens a model takes `--runtime PATH` (else
//! `RKL_RUNTIME`), `--abi 1.2|1.3`, `--isolated` and `--max-context N`.

mod args;
mod bench;
mod cache_cmd;
mod info;
mod run;
mod serve;

use std::process::ExitCode;

const USAGE: &str = "\
usage: rkl COMMAND ...

  rkl info [MODEL] [--json]             find the runtime, tell its release and what rkl supports
                                        on it, check the board (/dev/rknpu, CPU features)
  rkl run MODEL PROMPT [--system TEXT] [--max-tokens N] [--temperature X] [--top-p X] [--top-k N]
                       [--stats]        one reply, streamed to stdout (statistics to stderr)
  rkl chat MODEL [--system TEXT] [--max-tokens N]
                                        a streaming REPL keeping the conversation in the model's
                                        history; /reset forgets it, /exit (or end of input) quits
  rkl bench MODEL [--runs N] [--prompt-tokens N] [--gen-tokens N] [--json]
                                        TTFT, prefill and decode tokens/s, without and with a
                                        prompt cache, repeated N times (default 5)
  rkl cache list DIR [--json] | show PATH | clean DIR [--stale] [--dry-run]
          | prune DIR --max-bytes N [--dry-run] | save MODEL PROMPT PATH
                                        prompt caches; list/show/clean/prune are the `rkl-cache`
                                        tool's commands (`rkl-cache` stays, as an alias)
  rkl serve [MODEL...] [--config FILE] [--listen ADDR] [--api-key KEY] [--cache-dir DIR]
            [--no-auto-cache] [--in-process] [--max-queue N] [--max-body-bytes N]
                                        an OpenAI-compatible HTTP server (see `rkl serve --help`)

Options of every command that opens a model:
  --runtime PATH     the runtime library (else RKL_RUNTIME, else the loader's search for librkllmrt.so)
  --abi 1.2|1.3      the runtime release, where detection is not certain (else RKL_RUNTIME_ABI)
  --isolated         run the runtime in a worker process (rkl serve: the default)
  --max-context N    the context window in tokens
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match command.as_str() {
        "info" => info::main(rest),
        "run" => run::run_main(rest),
        "chat" => run::chat_main(rest),
        "bench" => bench::main(rest),
        "cache" => cache_cmd::main(rest),
        "serve" => serve::main(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        "version" | "--version" | "-V" => {
            println!("rkl {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        other => Err(args::Usage(format!("unknown command '{other}'")).into()),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            eprintln!("rkl: {msg}\n");
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(msg)) => {
            eprintln!("rkl: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Why a command failed: misuse (exit 2, with the usage) or a failure (exit 1).
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Failed(String),
}

impl From<args::Usage> for Failure {
    fn from(u: args::Usage) -> Failure {
        Failure::Usage(u.0)
    }
}

impl From<rkl::Error> for Failure {
    fn from(e: rkl::Error) -> Failure {
        Failure::Failed(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Failed(e.to_string())
    }
}

/// What every command returns.
pub type CmdResult = Result<ExitCode, Failure>;
