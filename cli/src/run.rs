//! `rkl run MODEL PROMPT` and `rkl chat MODEL`.

use crate::args::{join, Args, Usage, MODEL_FLAGS, MODEL_OPTIONS};
use crate::{CmdResult, Failure};
use rkl::{FinishReason, GenerateRequest, Model, Sampling};
use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;
use std::process::ExitCode;

const GEN_OPTIONS: &[&str] = &["--system", "--max-tokens", "--temperature", "--top-p", "--top-k"];

/// Sampling options given on the command line (`None` when none was).
fn sampling(args: &Args) -> Result<Option<Sampling>, Usage> {
    let s = Sampling {
        temperature: args.parsed("--temperature")?,
        top_p: args.parsed("--top-p")?,
        top_k: args.parsed("--top-k")?,
        ..Sampling::default()
    };
    Ok((s != Sampling::default()).then_some(s))
}

fn request(args: &Args, prompt: String) -> Result<GenerateRequest, Usage> {
    let mut req = GenerateRequest::new(prompt);
    req.max_new_tokens = args.parsed("--max-tokens")?;
    req.sampling = sampling(args)?;
    Ok(req)
}

/// Streams one reply to stdout; returns its statistics.
fn stream_reply(model: &Model, req: &GenerateRequest) -> Result<rkl::Stats, Failure> {
    let mut out = std::io::stdout().lock();
    let mut broken = false;
    let stats = model.generate(req, |text| {
        if out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_err() {
            broken = true; // stdout closed: stop generating
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if broken {
        return Err(Failure::Failed("stdout was closed".into()));
    }
    Ok(stats)
}

pub fn run_main(argv: &[String]) -> CmdResult {
    let args = Args::parse(argv, &join(MODEL_OPTIONS, GEN_OPTIONS), &join(MODEL_FLAGS, &["--stats"]))?;
    args.expect_positional(&["MODEL", "PROMPT"])?;
    let model = Model::open(&args.open_config(&args.positional[0])?)?;
    let prompt = format!("{}{}", system_part(&args), args.positional[1]);
    let stats = stream_reply(&model, &request(&args, prompt)?)?;
    println!();
    if args.flag("--stats") {
        print_stats(&stats);
    }
    model.close()?;
    Ok(if stats.finish == FinishReason::Error { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `--system TEXT` as the start of the prompt ("TEXT\n\n"), as `rkl serve`
/// renders a system message.
fn system_part(args: &Args) -> String {
    args.value("--system").map(|s| format!("{s}\n\n")).unwrap_or_default()
}

fn print_stats(s: &rkl::Stats) {
    eprintln!(
        "{} tokens, TTFT {:.1} ms, prefill {} tokens in {:.1} ms, decode {} tokens in {:.1} ms, finish {:?}",
        s.tokens, s.ttft_ms, s.prefill_tokens, s.prefill_ms, s.decode_tokens, s.decode_ms, s.finish
    );
}

pub fn chat_main(argv: &[String]) -> CmdResult {
    let args = Args::parse(argv, &join(MODEL_OPTIONS, GEN_OPTIONS), &join(MODEL_FLAGS, &["--stats"]))?;
    args.expect_positional(&["MODEL"])?;
    let model = Model::open(&args.open_config(&args.positional[0])?)?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "rkl chat: {} (runtime {}); /reset forgets the conversation, /exit quits",
            args.positional[0],
            model.family()
        );
    }
    // The system text goes before the first turn only: the model keeps the
    // conversation in its KV history (keep_history).
    let mut first_turn = true;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let line = line.trim_end_matches('\r');
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                model.clear_history(false)?;
                first_turn = true;
                println!("(conversation reset)");
                continue;
            }
            _ => {}
        }
        let prompt = if first_turn { format!("{}{line}", system_part(&args)) } else { line.to_string() };
        let mut req = request(&args, prompt)?;
        req.keep_history = true;
        match stream_reply(&model, &req) {
            Ok(stats) => {
                println!();
                first_turn = false;
                if args.flag("--stats") {
                    print_stats(&stats);
                }
            }
            Err(Failure::Failed(e)) => {
                // A failed turn is reported; the REPL goes on (in isolation
                // mode a crashed worker restarts on the next turn).
                println!();
                eprintln!("rkl: {e}");
            }
            Err(other) => return Err(other),
        }
    }
    model.close()?;
    Ok(ExitCode::SUCCESS)
}
