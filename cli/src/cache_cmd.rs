//! `rkl cache list|show|clean|prune|save`: the `rkl-cache` tool's commands
//! (which stays, as an alias of these) on the library's cache API, plus
//! `save` and `--json` for `list`.

use crate::args::{join, Args, Usage, MODEL_FLAGS, MODEL_OPTIONS};
use crate::CmdResult;
use rkl::cache::{path_of, scan, Found, Manifest};
use rkl::{GenerateRequest, Model, Verdict};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

const USAGE: &str =
    "rkl cache list DIR [--json] | show PATH | clean DIR [--stale] [--dry-run] | prune DIR --max-bytes N [--dry-run] | save MODEL PROMPT PATH";

pub fn main(argv: &[String]) -> CmdResult {
    let args = Args::parse(
        argv,
        &join(MODEL_OPTIONS, &["--max-bytes"]),
        &join(MODEL_FLAGS, &["--json", "--stale", "--dry-run"]),
    )?;
    let words: Vec<&str> = args.positional.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["list", dir] => list(Path::new(dir), args.flag("--json")),
        ["show", path] => show(Path::new(path)),
        ["clean", dir] => {
            let verb = if args.flag("--dry-run") { "would remove" } else { "removed" };
            for r in rkl::cache::clean(Path::new(dir), args.flag("--stale"), args.flag("--dry-run"))? {
                println!("{verb} {} {}", r.what, printable(&r.path.to_string_lossy()));
            }
            Ok(ExitCode::SUCCESS)
        }
        ["prune", dir] => {
            let max: u64 = args.parsed("--max-bytes")?.ok_or_else(|| Usage("prune needs --max-bytes N".into()))?;
            let verb = if args.flag("--dry-run") { "would remove" } else { "removed" };
            for r in rkl::cache::prune(Path::new(dir), max, None, args.flag("--dry-run"))? {
                println!("{verb} {} {}", r.what, printable(&r.path.to_string_lossy()));
            }
            Ok(ExitCode::SUCCESS)
        }
        ["save", model, prompt, path] => {
            let model = Model::open(&args.open_config(model)?)?;
            if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let info = model.cache_save(&GenerateRequest::new(*prompt), Path::new(path))?;
            let size = info.manifest.as_ref().map_or(0, |m| m.payload.size);
            let ttft = info.save_stats.map_or(0.0, |s| s.ttft_ms);
            println!("saved {} ({}, prefill {:.1} ms)", printable(path), human_size(size), ttft);
            model.close()?;
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(Usage(format!("usage: {USAGE}")).into()),
    }
}

/// `text` with control characters escaped: names come from files anyone
/// may have written.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

fn verdict_word(v: &Verdict) -> String {
    printable(&match v {
        Verdict::Valid => "valid".into(),
        Verdict::Stale(why) => format!("stale ({why})"),
        Verdict::Invalid(e) => format!("invalid ({e})"),
    })
}

pub fn human_size(bytes: u64) -> String {
    match bytes {
        0..=9_999 => format!("{bytes} B"),
        10_000..=9_999_999 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

fn age(created_unix: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let s = now.saturating_sub(created_unix);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn summary(m: &Manifest) -> String {
    let model = Path::new(&m.model.path).file_name().map_or(m.model.path.clone(), |n| n.to_string_lossy().into_owned());
    printable(&format!(
        "model {model}, runtime {}, {} ago, {}, prompt {:?}",
        m.runtime_family,
        age(m.created_unix),
        human_size(m.payload.size),
        m.prompt.preview
    ))
}

/// One entry of a cache directory as JSON (also `rkl serve`'s cache listing).
pub fn entry_json(found: &Found) -> serde_json::Value {
    let name = path_of(found).file_name().unwrap_or_default().to_string_lossy().into_owned();
    match found {
        Found::Cache(info) => {
            let m = info.manifest.as_ref();
            json!({
                "name": name,
                "kind": "cache",
                "verdict": match &info.verdict { Verdict::Valid => "valid", Verdict::Stale(_) => "stale", Verdict::Invalid(_) => "invalid" },
                "detail": verdict_word(&info.verdict),
                "size_bytes": m.map(|m| m.payload.size),
                "created_unix": m.map(|m| m.created_unix),
                "runtime": m.map(|m| m.runtime_family.to_string()),
                "prompt_preview": m.map(|m| m.prompt.preview.clone()),
            })
        }
        Found::Orphan(_) => json!({ "name": name, "kind": "orphan payload" }),
        Found::Temporary(_) => json!({ "name": name, "kind": "temporary file" }),
    }
}

fn list(dir: &Path, as_json: bool) -> CmdResult {
    let found = scan(dir)?;
    if as_json {
        let all: Vec<_> = found.iter().map(entry_json).collect();
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    for f in &found {
        let name = printable(&path_of(f).file_name().unwrap_or_default().to_string_lossy());
        match f {
            Found::Cache(info) => {
                let details = info.manifest.as_ref().map(summary).unwrap_or_default();
                println!("{name}\t{}\t{details}", verdict_word(&info.verdict));
            }
            Found::Orphan(_) => println!("{name}\torphan payload (no manifest names it)"),
            Found::Temporary(_) => println!("{name}\ttemporary file of an unfinished save"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(path: &Path) -> CmdResult {
    let info = rkl::cache::inspect(path);
    if let Some(m) = &info.manifest {
        print!("{}", String::from_utf8_lossy(&m.to_json()));
    }
    println!("verdict: {}", verdict_word(&info.verdict));
    Ok(if matches!(info.verdict, Verdict::Invalid(_)) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
