//! The prompt-cache store against an attacker and a careless user: planted
//! manifests that name other files, paths that hold something else than a
//! cache, FIFOs and links, files others could have written, and names with
//! terminal escapes. rkl deletes, replaces and hands to the runtime only
//! what it can prove it made, and never blocks on a file it did not open.

mod common;

use common::*;
use rkl::cache::{scan, Found, Manifest};
use rkl::{ErrorKind, GenerateRequest, Model, OpenConfig, Verdict};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PROMPT: &str = "A system prompt worth caching, of some length. ";

fn settings(tag: &str, isolated: bool) -> OpenConfig {
    let mut c = config(&model_file(tag, &["reply = ok {prompt}", "kv_bytes_per_token = 32"]));
    c.isolated = isolated;
    c.host_path = isolated.then(|| env!("CARGO_BIN_EXE_rkl-host").into());
    c
}

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rkl-cache"))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Runs `f` on a thread and fails the test if it does not return within
/// `limit` (a FIFO opened for reading would block forever).
fn returns_within<T: Send + 'static>(what: &str, limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("{what} blocked for {limit:?}"))
}

#[test]
fn a_save_replaces_only_an_rkl_cache() {
    for isolated in [false, true] {
        let model = Model::open(&settings("save-target", isolated)).unwrap();
        let dir = temp_dir("save-target");
        let request = GenerateRequest::new(PROMPT);

        let notes = dir.join("notes.txt");
        std::fs::write(&notes, b"my notes").unwrap();
        let e = model.cache_save(&request, &notes).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "isolated {isolated}: {e}");
        assert!(e.message().contains("not an rkl prompt cache"), "{e}");
        assert_eq!(std::fs::read(&notes).unwrap(), b"my notes");

        let fifo = dir.join("fifo.rklcache");
        mkfifo(&fifo);
        let e = model.cache_save(&request, &fifo).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO is still there");

        // A link to a real cache elsewhere: neither followed nor replaced.
        let elsewhere = temp_dir("save-target-elsewhere").join("real.rklcache");
        let real = model.cache_save(&request, &elsewhere).unwrap();
        let link = dir.join("link.rklcache");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let e = model.cache_save(&request, &link).unwrap_err();
        assert!(e.message().contains("symbolic link"), "{e}");
        assert!(real.payload_path.as_ref().unwrap().exists(), "the linked cache's payload was not removed");
        assert_eq!(rkl::cache::inspect(&elsewhere).verdict, Verdict::Valid);

        // Nothing was left of the refused saves.
        let left: Vec<_> = scan(&dir).unwrap();
        assert!(left.is_empty(), "{left:?}");
        model.close().unwrap();
    }
}

#[test]
fn a_planted_manifest_cannot_make_a_save_or_clean_delete_other_files() {
    let model = Model::open(&settings("planted", false)).unwrap();
    let dir = temp_dir("planted");
    let cache = dir.join("c.rklcache");
    let first = model.cache_save(&GenerateRequest::new(PROMPT), &cache).unwrap();
    let mut planted: Manifest = first.manifest.clone().unwrap();
    // Another cache beside it, and a model file: what a planted manifest
    // at `cache` names instead of its own payload.
    let other = model.cache_save(&GenerateRequest::new("another prompt"), &dir.join("other.rklcache")).unwrap();
    let other_payload = other.payload_path.clone().unwrap();
    let weights = dir.join("weights.rkllm");
    std::fs::write(&weights, b"weights").unwrap();
    for victim in [&other_payload, &weights] {
        planted.payload.file = victim.file_name().unwrap().to_str().unwrap().to_string();
        std::fs::write(&cache, planted.to_json()).unwrap();
        assert_eq!(rkl::cache::inspect(&cache).payload_path, None, "a foreign file is not this cache's payload");
        let out = tool().args(["clean", dir.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(victim.exists(), "clean removed {}", victim.display());
        std::fs::write(&cache, planted.to_json()).unwrap();
        model.cache_save(&GenerateRequest::new(PROMPT), &cache).unwrap();
        assert!(victim.exists(), "a save removed what the replaced manifest named: {}", victim.display());
    }
    assert_eq!(rkl::cache::inspect(&dir.join("other.rklcache")).verdict, Verdict::Valid);
    // The payloads of the saves whose manifests the plants replaced are
    // orphans: named after `c.rklcache`, which no longer names them; clean
    // takes them once they are a minute old.
    let orphans: Vec<_> = scan(&dir).unwrap().into_iter().filter(|f| matches!(f, Found::Orphan(_))).collect();
    assert_eq!(orphans.len(), 2, "{orphans:?}");
    assert!(orphans.contains(&Found::Orphan(first.payload_path.unwrap())), "{orphans:?}");
}

#[test]
fn clean_removes_only_files_of_rkls_forms() {
    let dir = temp_dir("clean-forms");
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    let strangers = ["notes.kv", ".vimrc.tmp", ".x.tmp", "c.rklcache.0123456789abcdef.kv", ".c.rklcache.12-3.txt.tmp"];
    for name in strangers {
        let path = dir.join(name);
        std::fs::write(&path, b"not rkl's").unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
    }
    let out = tool().args(["clean", dir.to_str().unwrap(), "--stale"]).output().unwrap();
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    for name in strangers {
        assert!(dir.join(name).exists(), "{name} was removed");
    }
}

#[test]
fn a_manifest_naming_a_fifo_as_its_model_never_blocks() {
    let model = Model::open(&settings("fifo-model", false)).unwrap();
    let dir = temp_dir("fifo-model");
    let cache = dir.join("c.rklcache");
    let info = model.cache_save(&GenerateRequest::new(PROMPT), &cache).unwrap();
    let fifo = dir.join("model.fifo");
    mkfifo(&fifo);
    let mut m = info.manifest.unwrap();
    m.model.path = fifo.to_str().unwrap().to_string();
    std::fs::write(&cache, m.to_json()).unwrap();
    let limit = Duration::from_secs(10);
    let c = cache.clone();
    let verdict = returns_within("inspect", limit, move || rkl::cache::inspect(&c).verdict);
    assert!(matches!(verdict, Verdict::Stale(_)), "{verdict:?}");
    for args in [vec!["list", dir.to_str().unwrap()], vec!["show", cache.to_str().unwrap()]] {
        let mut command = tool();
        command.args(&args);
        let out = returns_within("rkl-cache", limit, move || command.output().unwrap());
        assert!(String::from_utf8_lossy(&out.stdout).contains("stale"), "{args:?}: {out:?}");
    }
    let mut command = tool();
    command.args(["clean", dir.to_str().unwrap(), "--stale"]);
    let out = returns_within("rkl-cache clean --stale", limit, move || command.output().unwrap());
    assert!(out.status.success(), "{out:?}");
    assert!(!cache.exists(), "the stale cache was removed");
    assert!(std::fs::symlink_metadata(&fifo).is_ok(), "the FIFO was not touched");
}

#[test]
fn caches_others_could_have_written_are_not_loaded() {
    for isolated in [false, true] {
        let model = Model::open(&settings("trust", isolated)).unwrap();
        let dir = temp_dir("trust");
        let cache = dir.join("c.rklcache");
        let info = model.cache_save(&GenerateRequest::new(PROMPT), &cache).unwrap();
        let payload = info.payload_path.unwrap();
        // What rkl wrote is its owner's alone.
        for file in [&cache, &payload] {
            assert_eq!(std::fs::metadata(file).unwrap().mode() & 0o777, 0o600, "{}", file.display());
        }
        let set = |p: &Path, mode: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        let untrusted = |what: &str| {
            let e = model.cache_load(&cache).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::CacheUntrusted, "isolated {isolated}, {what}: {e}");
        };
        set(&payload, 0o666);
        untrusted("a payload others may write");
        set(&payload, 0o600);
        set(&cache, 0o620);
        untrusted("a manifest its group may write");
        set(&cache, 0o600);
        set(&dir, 0o777);
        untrusted("a directory anyone may write, without the sticky bit");
        set(&dir, 0o1777);
        model.cache_load(&cache).expect("a sticky directory is fine");
        model.cache_release().unwrap();
        set(&dir, 0o755);
        model.close().unwrap();
    }
}

#[test]
fn the_trust_rule_can_be_turned_off_for_shared_caches() {
    let model = Model::open(&settings("trust-off", false)).unwrap();
    let dir = temp_dir("trust-off");
    let cache = dir.join("c.rklcache");
    let info = model.cache_save(&GenerateRequest::new(PROMPT), &cache).unwrap();
    std::fs::set_permissions(info.payload_path.unwrap(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let show = |trust: Option<&str>| {
        let mut command = tool();
        command.args(["show", cache.to_str().unwrap()]);
        if let Some(v) = trust {
            command.env("RKL_CACHE_TRUST", v);
        }
        String::from_utf8(command.output().unwrap().stdout).unwrap()
    };
    assert!(show(None).contains("does not trust it"), "{}", show(None));
    assert!(show(Some("any")).contains("verdict: valid"), "{}", show(Some("any")));
}

#[test]
fn listings_print_names_from_files_without_terminal_escapes() {
    let model = Model::open(&settings("escapes", false)).unwrap();
    let dir = temp_dir("escapes");
    let cache = dir.join("evil\x1b[2J\x07.rklcache");
    model.cache_save(&GenerateRequest::new("prompt \x1b]0;owned\x07 here"), &cache).unwrap();
    for args in [vec!["list", dir.to_str().unwrap()], vec!["show", cache.to_str().unwrap()]] {
        let out = tool().args(&args).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(!out.stdout.iter().any(|&b| b == 0x1b || b == 0x07), "{args:?} printed a control character: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("evil") || args[0] == "show");
    }
}
