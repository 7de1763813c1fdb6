//! `rkl info [MODEL]`: finds the runtime, tells its release and what rkl
//! supports on it, and checks the board. With a model, also opens it to
//! learn the runtime's version (it prints it only at init).

use crate::args::{join, Args, MODEL_FLAGS, MODEL_OPTIONS};
use crate::CmdResult;
use rkl::Model;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

/// CPU features the RKLLM runtime's kernels use (Armv8.2-A: half-precision
/// arithmetic and the dot-product instructions), as /proc/cpuinfo names them.
const NEEDED_CPU_FEATURES: &[&str] = &["asimd", "fphp", "asimdhp", "asimddp"];

pub fn main(argv: &[String]) -> CmdResult {
    let args = Args::parse(argv, MODEL_OPTIONS, &join(MODEL_FLAGS, &["--json"]))?;
    if args.positional.len() > 1 {
        return Err(crate::args::Usage("rkl info takes at most one MODEL".into()).into());
    }
    let config = args.open_config(args.positional.first().map_or("", String::as_str))?;
    let probe = rkl::probe_runtime(config.runtime_path.clone(), config.runtime_abi);
    let board = board_checks();
    let mut report = json!({
        "rkl": env!("CARGO_PKG_VERSION"),
        "board": board,
    });
    let mut ok = true;
    match &probe {
        Ok(p) => {
            report["runtime"] = json!({
                "path": p.path,
                "release": p.family.name(),
                "supports": {
                    "per_request_sampling": p.samples_per_run,
                    "per_request_token_limit": if p.limits_tokens_per_run { "runtime" } else { "enforced by rkl (abort)" },
                    "prompt_caches": true,
                    "automatic_prompt_caching": true,
                    "isolation_mode": true,
                    "function_tools": true,
                    "lora": true,
                },
            });
        }
        Err(e) => {
            ok = false;
            report["runtime"] = json!({ "error": e.to_string() });
        }
    }
    if let (Ok(_), Some(model)) = (&probe, args.positional.first()) {
        match Model::open(&config) {
            Ok(m) => {
                report["model"] = json!({
                    "path": model,
                    "runtime_version": m.runtime_version(),
                    "release": m.family().name(),
                    "isolated": m.is_isolated(),
                });
                let _ = m.close();
            }
            Err(e) => {
                ok = false;
                report["model"] = json!({ "path": model, "error": e.to_string() });
            }
        }
    }
    if args.flag("--json") {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print_text(&report);
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_text(r: &serde_json::Value) {
    println!("rkl {}", r["rkl"].as_str().unwrap_or("?"));
    let rt = &r["runtime"];
    if let Some(e) = rt["error"].as_str() {
        println!("runtime: NOT USABLE: {e}");
    } else {
        println!(
            "runtime: {} (release family {})",
            rt["path"].as_str().unwrap_or("?"),
            rt["release"].as_str().unwrap_or("?")
        );
        let s = &rt["supports"];
        println!(
            "  per-request sampling: {}",
            if s["per_request_sampling"] == true { "yes" } else { "no (1.2: set it when opening)" }
        );
        println!("  per-request token limit: {}", s["per_request_token_limit"].as_str().unwrap_or("?"));
        println!("  prompt caches, automatic caching, isolation mode, function tools, LoRA: yes");
    }
    let m = &r["model"];
    if !m.is_null() {
        match m["error"].as_str() {
            Some(e) => println!("model: {} NOT USABLE: {e}", m["path"].as_str().unwrap_or("?")),
            None => println!(
                "model: {} (runtime version {})",
                m["path"].as_str().unwrap_or("?"),
                m["runtime_version"].as_str().unwrap_or("not printed")
            ),
        }
    }
    let b = &r["board"];
    println!("board: {}", b["soc"].as_str().unwrap_or("unknown SoC"));
    println!("  architecture: {}", b["arch"].as_str().unwrap_or("?"));
    println!(
        "  /dev/rknpu: {}",
        if b["rknpu_device"] == true { "present" } else { "missing (no NPU driver: only the simulator can run here)" }
    );
    if let Some(v) = b["rknpu_driver"].as_str() {
        println!("  NPU driver: {v}");
    }
    let missing: Vec<&str> =
        b["cpu_features_missing"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
    if missing.is_empty() {
        println!("  CPU features the runtime needs: all present");
    } else {
        println!("  CPU features the runtime needs: missing {}", missing.join(", "));
    }
}

/// What the board offers: the NPU device, the SoC, the CPU features.
fn board_checks() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let features: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("Features") || l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.split_whitespace().collect())
        .unwrap_or_default();
    let missing: Vec<&str> = NEEDED_CPU_FEATURES.iter().copied().filter(|f| !features.contains(f)).collect();
    let soc = std::fs::read("/proc/device-tree/compatible")
        .ok()
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
        })
        .and_then(|names| names.into_iter().find(|n| n.starts_with("rockchip,")));
    let driver = std::fs::read_to_string("/sys/kernel/debug/rknpu/version").ok().map(|s| s.trim().to_string());
    json!({
        "arch": std::env::consts::ARCH,
        "soc": soc,
        "rknpu_device": Path::new("/dev/rknpu").exists(),
        "rknpu_driver": driver,
        "cpu_features_needed": NEEDED_CPU_FEATURES,
        "cpu_features_missing": missing,
    })
}
