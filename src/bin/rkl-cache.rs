//! rkl-cache: list, inspect and clean rkl prompt caches.
//!
//!   rkl-cache list DIR            one line per cache, orphan and temporary file
//!   rkl-cache show PATH           a cache's manifest and verdict
//!   rkl-cache clean DIR [--stale] [--dry-run]
//!                                 delete invalid caches, orphan payloads and
//!                                 temporaries (and stale caches with --stale);
//!                                 only files rkl made, owned by the caller
//!   rkl-cache prune DIR --max-bytes N [--dry-run]
//!                                 remove the least recently used automatic
//!                                 caches until they take at most N bytes
//!
//! Names, paths and previews come from files anyone may have written:
//! control characters in them are printed escaped (`\u{1b}`), never raw.

use rkl::cache::{path_of, scan, Found, Manifest};
use rkl::Verdict;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["list", dir] => list(Path::new(dir)),
        ["show", path] => show(Path::new(path)),
        ["clean", dir, flags @ ..] if flags.iter().all(|f| *f == "--stale" || *f == "--dry-run") => {
            clean(Path::new(dir), flags.contains(&"--stale"), flags.contains(&"--dry-run"))
        }
        ["prune", dir, "--max-bytes", n, rest @ ..]
            if rest.iter().all(|f| *f == "--dry-run") && n.parse::<u64>().is_ok() =>
        {
            prune(Path::new(dir), n.parse().unwrap_or(0), !rest.is_empty())
        }
        _ => {
            eprintln!(
                "usage: rkl-cache list DIR | show PATH | clean DIR [--stale] [--dry-run] | prune DIR --max-bytes N [--dry-run]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rkl-cache: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `text` with control characters escaped, safe to print on a terminal.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

fn printable_path(path: &Path) -> String {
    printable(&path.to_string_lossy())
}

fn verdict_word(verdict: &Verdict) -> String {
    printable(&match verdict {
        Verdict::Valid => "valid".into(),
        Verdict::Stale(why) => format!("stale ({why})"),
        Verdict::Invalid(e) => format!("invalid ({e})"),
    })
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

fn size(bytes: u64) -> String {
    match bytes {
        0..=9_999 => format!("{bytes} B"),
        10_000..=9_999_999 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

fn summary(m: &Manifest) -> String {
    let model = Path::new(&m.model.path).file_name().map_or(m.model.path.clone(), |n| n.to_string_lossy().into_owned());
    printable(&format!(
        "model {model}, runtime {}, {} ago, {}, prompt {:?}",
        m.runtime_family,
        age(m.created_unix),
        size(m.payload.size),
        m.prompt.preview
    ))
}

fn list(dir: &Path) -> Result<ExitCode, rkl::Error> {
    for found in scan(dir)? {
        let name = printable(&path_of(&found).file_name().unwrap_or_default().to_string_lossy());
        match &found {
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

fn show(path: &Path) -> Result<ExitCode, rkl::Error> {
    let info = rkl::cache::inspect(path);
    if let Some(m) = &info.manifest {
        // JSON escapes control characters in strings itself.
        print!("{}", String::from_utf8_lossy(&m.to_json()));
    }
    println!("verdict: {}", verdict_word(&info.verdict));
    Ok(if matches!(info.verdict, Verdict::Invalid(_)) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn clean(dir: &Path, stale: bool, dry_run: bool) -> Result<ExitCode, rkl::Error> {
    let verb = if dry_run { "would remove" } else { "removed" };
    for removal in rkl::cache::clean(dir, stale, dry_run)? {
        println!("{verb} {} {}", removal.what, printable_path(&removal.path));
    }
    Ok(ExitCode::SUCCESS)
}

fn prune(dir: &Path, max_bytes: u64, dry_run: bool) -> Result<ExitCode, rkl::Error> {
    let verb = if dry_run { "would remove" } else { "removed" };
    for removal in rkl::cache::prune(dir, max_bytes, None, dry_run)? {
        println!("{verb} {} {}", removal.what, printable_path(&removal.path));
    }
    Ok(ExitCode::SUCCESS)
}
