//! rkl-cache: list, inspect and clean rkl prompt caches.
//!
//!   rkl-cache list DIR            one line per cache, orphan and temporary file
//!   rkl-cache show PATH           a cache's manifest and verdict
//!   rkl-cache clean DIR [--stale] [--dry-run]
//!                                 delete invalid caches, orphan payloads and
//!                                 temporaries (and stale caches with --stale)

use rkl::cache::{path_of, remove_cache, scan, Found, Manifest};
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
        _ => {
            eprintln!("usage: rkl-cache list DIR | show PATH | clean DIR [--stale] [--dry-run]");
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

fn verdict_word(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Valid => "valid".into(),
        Verdict::Stale(why) => format!("stale ({why})"),
        Verdict::Invalid(e) => format!("invalid ({e})"),
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

fn size(bytes: u64) -> String {
    match bytes {
        0..=9_999 => format!("{bytes} B"),
        10_000..=9_999_999 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

fn summary(m: &Manifest) -> String {
    let model = Path::new(&m.model.path).file_name().map_or(m.model.path.clone(), |n| n.to_string_lossy().into_owned());
    format!(
        "model {model}, runtime {}, {} ago, {}, prompt {:?}",
        m.runtime_family,
        age(m.created_unix),
        size(m.payload.size),
        m.prompt.preview
    )
}

fn list(dir: &Path) -> Result<ExitCode, rkl::Error> {
    for found in scan(dir)? {
        let name = path_of(&found).file_name().unwrap_or_default().to_string_lossy().into_owned();
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
        print!("{}", String::from_utf8_lossy(&m.to_json()));
    }
    println!("verdict: {}", verdict_word(&info.verdict));
    Ok(if matches!(info.verdict, Verdict::Invalid(_)) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn clean(dir: &Path, stale_too: bool, dry_run: bool) -> Result<ExitCode, rkl::Error> {
    let remove = |what: &str, path: &Path, act: &dyn Fn() -> Result<(), rkl::Error>| -> Result<(), rkl::Error> {
        println!("{}{what} {}", if dry_run { "would remove " } else { "removed " }, path.display());
        if dry_run {
            Ok(())
        } else {
            act()
        }
    };
    for found in scan(dir)? {
        match &found {
            Found::Cache(info) if matches!(info.verdict, Verdict::Invalid(_)) => {
                remove("invalid cache", &info.path, &|| remove_cache(info))?
            }
            Found::Cache(info) if stale_too && matches!(info.verdict, Verdict::Stale(_)) => {
                remove("stale cache", &info.path, &|| remove_cache(info))?
            }
            Found::Orphan(p) | Found::Temporary(p) => remove("leftover", p, &|| {
                std::fs::remove_file(p)
                    .map_err(|e| rkl::Error::new(rkl::ErrorKind::Io, format!("cannot remove '{}': {e}", p.display())))
            })?,
            Found::Cache(_) => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}
