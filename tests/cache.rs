//! Prompt caches through the safe core: save, inspect, load, the prefix
//! rule, and every way a cache on disk can be wrong.

mod common;

use common::*;
use rkl::cache::{scan, Found, Manifest};
use rkl::{ErrorKind, GenerateRequest, Model, Verdict};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

const SYSTEM: &str = "You are a careful assistant for a Rockchip board. Answer briefly, in the user's language. ";
const KV_BYTES: u64 = 64;

fn cache_model(tag: &str) -> (Model, PathBuf) {
    let path = model_file(tag, &["reply = answer to {prompt}", &format!("kv_bytes_per_token = {KV_BYTES}")]);
    (Model::open(&config(&path)).unwrap(), path)
}

fn saved(model: &Model, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    model.cache_save(&GenerateRequest::new(SYSTEM), &path).unwrap();
    path
}

fn text_and_stats(model: &Model, prompt: &str) -> rkl::Result<(String, rkl::Stats)> {
    let mut text = String::new();
    let stats = model.generate(&GenerateRequest::new(prompt), |c| {
        text.push_str(c);
        ControlFlow::Continue(())
    })?;
    Ok((text, stats))
}

fn kind(r: rkl::Result<rkl::CacheInfo>) -> ErrorKind {
    r.expect_err("the load must fail").kind()
}

#[test]
fn save_inspect_load_and_continue() {
    let (model, model_path) = cache_model("cache-basic");
    let dir = temp_dir("cache-basic");
    let path = dir.join("system prompt ✓.rklcache");
    let info = model.cache_save(&GenerateRequest::new(SYSTEM), &path).unwrap();
    let m = info.manifest.clone().unwrap();
    let prompt_tokens = prompt_tokens(&default_prefill(SYSTEM)) as u64;
    assert_eq!(m.payload.size, 16 + prompt_tokens * KV_BYTES, "the runtime's payload, whole");
    assert_eq!(m.runtime_family, sim_abi().name());
    assert!(m.runtime_version.as_deref().is_some_and(|v| v.starts_with(sim_abi().name())), "{m:?}");
    assert_eq!(m.prompt.bytes, SYSTEM.len() as u64);
    assert_eq!(m.model.path, std::fs::canonicalize(&model_path).unwrap().to_str().unwrap(), "recorded absolute");
    assert_eq!(info.verdict, Verdict::Valid);
    assert!(info.save_stats.unwrap().tokens <= 1, "saving stops after the first token");

    let inspected = rkl::cache::inspect(&path);
    assert_eq!(inspected.verdict, Verdict::Valid);
    assert_eq!(inspected.manifest.as_ref(), Some(&m));
    let listed = scan(&dir).unwrap();
    assert_eq!(listed.len(), 1, "only the cache, no leftovers: {listed:?}");

    let question = "What is the NPU's peak?";
    let (_, cold) = text_and_stats(&model, &format!("{SYSTEM}{question}")).unwrap();
    model.cache_load(&path).unwrap();
    let (text, warm) = text_and_stats(&model, &format!("{SYSTEM}{question}")).unwrap();
    assert_eq!(text, format!("answer to {question}"), "only the continuation reached the runtime");
    assert!(warm.prefill_tokens < cold.prefill_tokens / 2, "cold {cold:?} warm {warm:?}");

    // The wrong prompt shapes are errors, not a silent double prefix.
    assert_eq!(text_and_stats(&model, question).unwrap_err().kind(), ErrorKind::CacheMismatch);
    assert_eq!(text_and_stats(&model, SYSTEM).unwrap_err().kind(), ErrorKind::CacheMismatch);
    assert_eq!(text_and_stats(&model, "Something else entirely").unwrap_err().kind(), ErrorKind::CacheMismatch);
    let err = model.cache_save(&GenerateRequest::new("x"), &dir.join("other")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "no saving on top of a loaded cache");

    model.cache_release().unwrap();
    let (text, _) = text_and_stats(&model, question).unwrap();
    assert_eq!(text, format!("answer to {question}"));
}

#[test]
fn every_damage_has_its_own_error() {
    let (model, _) = cache_model("cache-damage");
    let dir = temp_dir("cache-damage");
    let good = saved(&model, &dir, "good.rklcache");
    let manifest = Manifest::read(&good).unwrap();
    let payload = dir.join(&manifest.payload.file);

    assert_eq!(kind(model.cache_load(&dir.join("absent.rklcache"))), ErrorKind::CacheNotFound);

    let garbage = dir.join("garbage.rklcache");
    std::fs::write(&garbage, b"{ this is not json").unwrap();
    assert_eq!(kind(model.cache_load(&garbage)), ErrorKind::CacheInvalid);

    let future = dir.join("future.rklcache");
    let text = String::from_utf8(manifest.to_json()).unwrap().replacen(
        "\"rkl_prompt_cache\": 1",
        "\"rkl_prompt_cache\": 2",
        1,
    );
    std::fs::write(&future, text).unwrap();
    assert_eq!(kind(model.cache_load(&future)), ErrorKind::CacheVersion);

    // Damage copies, so each case sees exactly one problem. A payload has
    // the name rkl gives it: its manifest's, a unique part, `.kv`.
    let payload_of = |name: &str| format!("{name}.rklcache.00000000000000aa.kv");
    let damaged = |name: &str, edit: &dyn Fn(&mut Vec<u8>)| -> PathBuf {
        let mut bytes = std::fs::read(&payload).unwrap();
        edit(&mut bytes);
        let file = payload_of(name);
        std::fs::write(dir.join(&file), bytes).unwrap();
        let mut m = manifest.clone();
        m.payload.file = file;
        let path = dir.join(format!("{name}.rklcache"));
        std::fs::write(&path, m.to_json()).unwrap();
        path
    };
    let truncated = damaged("truncated", &|b| b.truncate(b.len() - 1));
    assert_eq!(kind(model.cache_load(&truncated)), ErrorKind::CacheTruncated);
    let flipped = damaged("flipped", &|b| b[20] ^= 0x01);
    let err = model.cache_load(&flipped).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CacheCorrupt);
    assert!(err.message().contains(&payload_of("flipped")), "{err}");

    let missing = damaged("missing", &|_| {});
    std::fs::remove_file(dir.join(payload_of("missing"))).unwrap();
    assert_eq!(kind(model.cache_load(&missing)), ErrorKind::CacheTruncated);

    let edit_manifest = |name: &str, edit: &dyn Fn(&mut Manifest)| -> PathBuf {
        let mut m = manifest.clone();
        std::fs::copy(&payload, dir.join(payload_of(name))).unwrap();
        m.payload.file = payload_of(name);
        edit(&mut m);
        let path = dir.join(format!("{name}.rklcache"));
        std::fs::write(&path, m.to_json()).unwrap();
        path
    };
    let other_family = edit_manifest("family", &|m| {
        m.runtime_family = if m.runtime_family == "1.2" { "1.3".into() } else { "1.2".into() }
    });
    let err = model.cache_load(&other_family).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CacheMismatch);
    assert!(err.message().contains("runtime ABI"), "{err}");
    let escaping = edit_manifest("escape", &|m| m.payload.file = "../../etc/passwd".into());
    assert_eq!(kind(model.cache_load(&escaping)), ErrorKind::CacheInvalid);
    // A manifest naming a file beside it that rkl did not make for it (the
    // good cache's payload, a model file) is invalid: nothing it names is
    // read, and `clean` below removes the manifest but not those files.
    let foreign_payload = manifest.payload.file.clone();
    let borrowing = edit_manifest("borrowing", &|m| m.payload.file = foreign_payload.clone());
    let err = model.cache_load(&borrowing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CacheInvalid);
    assert!(err.message().contains("not a payload rkl made for it"), "{err}");
    std::fs::write(dir.join("weights.rkllm"), b"model weights").unwrap();
    let naming_a_model = edit_manifest("naming-a-model", &|m| m.payload.file = "weights.rkllm".into());
    assert_eq!(kind(model.cache_load(&naming_a_model)), ErrorKind::CacheInvalid);

    // A cache of another model.
    let (other, _) = cache_model("cache-other-model");
    let other_dir = temp_dir("cache-other");
    std::fs::write(other_dir.join("x"), b"").unwrap();
    let foreign = {
        let path = model_file("cache-foreign", &["reply = foreign", "name = another"]);
        let m = Model::open(&config(&path)).unwrap();
        saved(&m, &other_dir, "foreign.rklcache")
    };
    let err = other.cache_load(&foreign).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CacheMismatch);
    assert!(err.message().contains("model"), "{err}");

    // None of that disturbed the good cache or the model.
    model.cache_load(&good).unwrap();
    assert!(text_and_stats(&model, &format!("{SYSTEM}ok")).is_ok());

    // The directory listing tells each apart.
    let verdicts: Vec<_> = scan(&dir)
        .unwrap()
        .into_iter()
        .filter_map(|f| match f {
            Found::Cache(info) => {
                Some((info.path.file_name().unwrap().to_string_lossy().into_owned(), info.verdict.clone()))
            }
            _ => None,
        })
        .collect();
    assert!(verdicts.iter().any(|(n, v)| n == "good.rklcache" && *v == Verdict::Valid), "{verdicts:?}");
    assert!(verdicts.iter().any(
        |(n, v)| n == "flipped.rklcache" && matches!(v, Verdict::Invalid(e) if e.kind() == ErrorKind::CacheCorrupt)
    ));

    // The command-line tool on the same mixed directory.
    let tool = env!("CARGO_BIN_EXE_rkl-cache");
    let out = std::process::Command::new(tool).args(["list", dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    let line = |name: &str| {
        listing.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} not in {listing}")).to_string()
    };
    assert!(line("good.rklcache\t").contains("\tvalid\t"), "{listing}");
    assert!(line("good.rklcache\t").contains("prompt \"You are a careful"), "{listing}");
    assert!(line("flipped.rklcache").contains("invalid") && line("flipped.rklcache").contains("checksum"), "{listing}");
    assert!(line("truncated.rklcache").contains("invalid"), "{listing}");
    assert!(!listing.contains("garbage.rklcache"), "a file that is not a manifest is not listed as a cache: {listing}");
    let dry = std::process::Command::new(tool).args(["clean", dir.to_str().unwrap(), "--dry-run"]).output().unwrap();
    assert!(dry.status.success());
    let dry = String::from_utf8(dry.stdout).unwrap();
    assert!(dry.contains("would remove invalid cache") && dry.contains("would remove its payload"), "{dry}");
    let out = std::process::Command::new(tool).args(["clean", dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    let removed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(removed.replace("removed ", ""), dry.replace("would remove ", ""), "the dry run listed every file");
    let after: Vec<_> = scan(&dir).unwrap();
    // Left: the valid cache and the newer-format one (a newer rkl's).
    assert!(
        after.iter().all(|f| matches!(f, Found::Cache(i) if i.verdict == Verdict::Valid
            || matches!(&i.verdict, Verdict::Invalid(e) if e.kind() == ErrorKind::CacheVersion))),
        "{after:?}"
    );
    assert!(dir.join("weights.rkllm").exists() && payload.exists(), "files a manifest named were not removed");
    assert!(dir.join("garbage.rklcache").exists(), "a file that is not rkl's is not removed");
    model.cache_load(&good).unwrap();
}

#[test]
fn saving_replaces_the_old_cache_whole_and_cleans_up() {
    let (model, _) = cache_model("cache-replace");
    let dir = temp_dir("cache-replace");
    let path = dir.join("c.rklcache");
    model.cache_save(&GenerateRequest::new("first prompt"), &path).unwrap();
    let first = Manifest::read(&path).unwrap();
    model.cache_save(&GenerateRequest::new("a second, longer prompt"), &path).unwrap();
    let second = Manifest::read(&path).unwrap();
    assert_ne!(first.payload.file, second.payload.file);
    assert!(!dir.join(&first.payload.file).exists(), "the replaced payload is removed");
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "manifest and payload only: {names:?}");
}

#[test]
fn bad_places_to_save_are_clear_errors_and_damage_nothing() {
    let (model, _) = cache_model("cache-places");
    let dir = temp_dir("cache-places");
    let err = model.cache_save(&GenerateRequest::new("p"), &dir.join("no/such/dir/c.rklcache")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.message().contains("does not exist"), "{err}");

    // procfs refuses new files even to root: a read-only place.
    let err = model.cache_save(&GenerateRequest::new("p"), Path::new("/proc/rkl-test.rklcache")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");

    let mut with_slash = dir.join("c.rklcache").into_os_string();
    with_slash.push("/");
    let err = model.cache_save(&GenerateRequest::new("p"), Path::new(&with_slash)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(model.cache_save(&GenerateRequest::new("p"), &dir).unwrap_err().kind(), ErrorKind::InvalidArgument);

    let long = dir.join(format!("{}.rklcache", "é".repeat(110)));
    let err = model.cache_save(&GenerateRequest::new("p"), &long).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("file name"), "{err}");

    let fine = dir.join(format!("{} name with spaces.rklcache", "ü".repeat(90)));
    model.cache_save(&GenerateRequest::new("p"), &fine).unwrap();
    assert_eq!(rkl::cache::inspect(&fine).verdict, Verdict::Valid);
    assert_eq!(model.cache_save(&GenerateRequest::new(""), &fine).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let mut with_lora = GenerateRequest::new("p");
    with_lora.lora = Some("style".into());
    let err = model.cache_save(&with_lora, &fine).unwrap_err();
    assert!(err.message().contains("LoRA"), "{err}");
    assert_eq!(rkl::cache::inspect(&fine).verdict, Verdict::Valid, "the refused save left the cache alone");
}

#[test]
fn two_threads_saving_to_one_path_leave_one_whole_cache() {
    let (model, _) = cache_model("cache-race");
    let dir = temp_dir("cache-race");
    let path = dir.join("shared.rklcache");
    for round in 0..5 {
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let (model, path) = (model.clone(), path.clone());
                std::thread::spawn(move || {
                    let prompt = format!("thread {t} round {round} {}", "x".repeat(t * 40));
                    model.cache_save(&GenerateRequest::new(prompt), &path).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(rkl::cache::inspect(&path).verdict, Verdict::Valid, "round {round}");
        model.cache_load(&path).unwrap();
        model.cache_release().unwrap();
    }
    // Commits are serialised by the directory's lock: each save removes the
    // payload of the manifest it replaced, so nothing is left behind.
    let leftovers: Vec<_> = scan(&dir).unwrap().into_iter().filter(|f| !matches!(f, Found::Cache(_))).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2, "one manifest and its payload");
}

/// An abort of the model while a save waits behind another generation (its
/// run not registered yet) stops the save as well, and leaves no cache.
#[test]
fn an_abort_while_a_save_waits_its_turn_stops_the_save() {
    abort_while_a_save_waits(false);
}

#[test]
fn isolated_an_abort_while_a_save_waits_its_turn_stops_the_save() {
    abort_while_a_save_waits(true);
}

fn abort_while_a_save_waits(isolated: bool) {
    let path = model_file(
        "cache-abort-queued",
        &["reply = a long and slow answer to {prompt}", "time_scale = 1", "decode_us_per_token = 20000"],
    );
    let mut c = config(&path);
    if isolated {
        c.isolated = true;
        c.host_path = Some(env!("CARGO_BIN_EXE_rkl-host").into());
    }
    let model = Model::open(&c).unwrap();
    let dir = temp_dir("cache-abort-queued");
    let target = dir.join("system.rklcache");
    let mut busy = model.stream(&GenerateRequest::new("keep the runtime busy")).unwrap();
    assert!(matches!(busy.next(), Some(Ok(_))), "the first generation is running");
    let saver = {
        let (model, target) = (model.clone(), target.clone());
        std::thread::spawn(move || model.cache_save(&GenerateRequest::new(SYSTEM), &target))
    };
    // The save creates its temporary payload file before it queues.
    let waited = std::time::Instant::now();
    while std::fs::read_dir(&dir).unwrap().count() == 0 {
        assert!(waited.elapsed() < std::time::Duration::from_secs(30), "the save never started");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    model.abort();
    let saved = saver.join().unwrap();
    assert_eq!(saved.map(|_| ()).unwrap_err().kind(), ErrorKind::Aborted);
    assert_eq!(busy.by_ref().count(), 0, "the running generation was aborted too");
    assert_eq!(busy.stats().unwrap().finish, rkl::FinishReason::Aborted);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "an aborted save leaves nothing behind");
    // The model works on.
    saved_then_loaded(&model, &dir);
}

/// Isolation mode: `Model::abort` right after a save's request went to the
/// worker, while the save waits behind a running generation, stops the save
/// (the worker must not handle the abort before the save looked at the
/// model's abort count). The abort is made by a logger on the saving
/// thread, when rkl logs that the request was sent. Repeated, as the worker
/// served the two in a race.
#[test]
fn isolated_an_abort_right_after_a_save_was_sent_stops_the_save() {
    log::set_logger(&ABORT_AFTER_SEND).expect("no other logger in this test binary");
    log::set_max_level(log::LevelFilter::Trace);
    let path = model_file(
        "cache-abort-sent",
        &["reply = a long and slow answer to {prompt}", "time_scale = 1", "decode_us_per_token = 20000"],
    );
    let mut c = config(&path);
    c.isolated = true;
    c.host_path = Some(env!("CARGO_BIN_EXE_rkl-host").into());
    let model = Model::open(&c).unwrap();
    for round in 0..10 {
        let dir = temp_dir("cache-abort-sent");
        let target = dir.join("system.rklcache");
        let mut busy = model.stream(&GenerateRequest::new("keep the runtime busy")).unwrap();
        assert!(matches!(busy.next(), Some(Ok(_))), "round {round}: the first generation is running");
        let saver = {
            let (model, target) = (model.clone(), target.clone());
            std::thread::spawn(move || {
                ABORT_ON_SEND.with(|a| *a.borrow_mut() = Some(model.clone()));
                let saved = model.cache_save(&GenerateRequest::new(SYSTEM), &target);
                let aborted = ABORT_ON_SEND.with(|a| a.borrow_mut().take()).is_none();
                (saved, aborted)
            })
        };
        let (saved, aborted) = saver.join().unwrap();
        assert!(aborted, "round {round}: the logger did not see the request go out");
        assert_eq!(saved.map(|_| ()).unwrap_err().kind(), ErrorKind::Aborted, "round {round}");
        assert_eq!(busy.by_ref().count(), 0, "round {round}: the running generation was aborted too");
        assert_eq!(busy.stats().unwrap().finish, rkl::FinishReason::Aborted, "round {round}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "round {round}: an aborted save leaves nothing behind");
    }
    assert_eq!(model.restarts(), 0, "the worker stopped in time");
    saved_then_loaded(&model, &temp_dir("cache-abort-sent-after"));
}

thread_local! {
    /// The model to abort once this thread sent a request to a worker.
    static ABORT_ON_SEND: std::cell::RefCell<Option<Model>> = const { std::cell::RefCell::new(None) };
}

/// Aborts `ABORT_ON_SEND`'s model when rkl logs that a request was sent.
struct AbortAfterSend;

static ABORT_AFTER_SEND: AbortAfterSend = AbortAfterSend;

impl log::Log for AbortAfterSend {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        if record.args().to_string().starts_with("sent request") {
            if let Some(model) = ABORT_ON_SEND.with(|a| a.borrow_mut().take()) {
                model.abort();
            }
        }
    }

    fn flush(&self) {}
}

fn saved_then_loaded(model: &Model, dir: &Path) {
    let cache = saved(model, dir, "after.rklcache");
    model.cache_load(&cache).unwrap();
    let (text, _) = text_and_stats(model, &format!("{SYSTEM}and now?")).unwrap();
    assert!(text.starts_with("a long and slow answer to"), "{text}");
}

/// The KV-history promises of rkl.h hold against a runtime whose history
/// outlives what rkl asks (the simulator's `sticky_kv`, which the ABI
/// document allows): empty after a save and a release, exactly the cache's
/// tokens after a load (not stacked on a history), and empty after
/// clear_history with a cache loaded, in both modes.
#[test]
fn kv_history_promises_hold_when_the_runtime_keeps_its_history() {
    for isolated in [false, true] {
        let path = model_file(
            "sticky-kv",
            &[
                "reply = answer to {prompt} turn {turn}",
                &format!("kv_bytes_per_token = {KV_BYTES}"),
                "sticky_kv = true",
            ],
        );
        let mut cfg = config(&path);
        cfg.isolated = isolated;
        cfg.host_path = isolated.then(|| env!("CARGO_BIN_EXE_rkl-host").into());
        let model = Model::open(&cfg).unwrap();
        let dir = temp_dir("sticky-kv");
        let cache = saved(&model, &dir, "system.rklcache");
        assert_eq!(model.kv_cache_tokens().unwrap(), 0, "isolated {isolated}: history empty after a save");

        let cached = prompt_tokens(&default_prefill(SYSTEM));
        let mut turn = GenerateRequest::new("a first turn of some length");
        turn.keep_history = true;
        model.generate(&turn, |_| ControlFlow::Continue(())).unwrap();
        assert!(model.kv_cache_tokens().unwrap() > 0);
        model.cache_load(&cache).unwrap();
        assert_eq!(model.kv_cache_tokens().unwrap(), cached, "isolated {isolated}: the cache alone, not stacked");
        let (text, _) = text_and_stats(&model, &format!("{SYSTEM}and then?")).unwrap();
        assert!(text.ends_with("turn 2"), "isolated {isolated}: continues the cache's one turn: {text}");

        model.cache_release().unwrap();
        assert_eq!(model.kv_cache_tokens().unwrap(), 0, "isolated {isolated}: history empty after a release");

        model.cache_load(&cache).unwrap();
        model.clear_history(true).unwrap();
        assert_eq!(model.kv_cache_tokens().unwrap(), 0, "isolated {isolated}: empty after clear_history");
        let (text, _) = text_and_stats(&model, "plain").expect("no prefix rule once cleared");
        assert!(text.ends_with("turn 1"), "isolated {isolated}: {text}");
    }
}

/// A model whose simulator checks every byte of a cache it loads
/// (`cache_check = full`: a load succeeds only on exactly the bytes a save
/// wrote) and waits `delay_ms` before it opens the file.
fn strict_model(tag: &str, kv_bytes: u64, delay_ms: u64, isolated: bool) -> Model {
    let path = model_file(
        tag,
        &[
            "reply = answer to {prompt}",
            &format!("kv_bytes_per_token = {kv_bytes}"),
            "cache_check = full",
            &format!("cache_load_delay_ms = {delay_ms}"),
        ],
    );
    let mut c = config(&path);
    if isolated {
        c.isolated = true;
        c.host_path = Some(env!("CARGO_BIN_EXE_rkl-host").into());
    }
    Model::open(&c).unwrap()
}

/// Writes `bytes` over the start of `path`, in place: same inode, no
/// truncation (what an attacker with write access to the file can do).
fn rewrite_in_place(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

/// The payload's tokens as the simulator wrote them (its header).
fn saved_tokens(payload: &[u8]) -> u32 {
    u32::from_le_bytes(payload[8..12].try_into().unwrap())
}

/// The file is rewritten in place after rkl checked it and before the
/// runtime opens it (the simulator waits 300 ms, the rewrite comes 100 ms
/// into the load): the runtime still reads exactly the checked bytes.
#[test]
fn the_runtime_reads_the_checked_bytes_though_the_file_changes_before_it_reads() {
    rewritten_between_check_and_read(false);
}

#[test]
fn isolated_the_runtime_reads_the_checked_bytes_though_the_file_changes_before_it_reads() {
    rewritten_between_check_and_read(true);
}

fn rewritten_between_check_and_read(isolated: bool) {
    let model = strict_model("cache-toctou", 1024, 300, isolated);
    let dir = temp_dir("cache-toctou");
    let path = saved(&model, &dir, "c.rklcache");
    let payload = dir.join(Manifest::read(&path).unwrap().payload.file);
    let original = std::fs::read(&payload).unwrap();
    let mut other = original.clone();
    other[16..].fill(b'#'); // same size, a filler the simulator refuses
    let mut proved = false;
    for attempt in 0..5 {
        rewrite_in_place(&payload, 0, &original);
        let loader = {
            let (model, path) = (model.clone(), path.clone());
            std::thread::spawn(move || model.cache_load(&path))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        rewrite_in_place(&payload, 0, &other);
        match loader.join().unwrap() {
            Ok(_) => {
                assert_eq!(model.kv_cache_tokens().unwrap(), saved_tokens(&original), "the saved state was loaded");
                let (text, _) = text_and_stats(&model, &format!("{SYSTEM}and now?")).unwrap();
                assert_eq!(text, "answer to and now?");
                model.cache_release().unwrap();
                proved = true;
                break;
            }
            // The rewrite came before the check ended (a slow machine): again.
            Err(e) if e.kind() == ErrorKind::CacheCorrupt => eprintln!("attempt {attempt}: rewritten too early"),
            Err(e) => panic!("the runtime read bytes other than those checked: {e} ({:?})", e.kind()),
        }
    }
    assert!(proved, "the rewrite never fell between the check and the runtime's read");
    // The file now holds the other bytes: refused, and the model works on.
    assert_eq!(kind(model.cache_load(&path)), ErrorKind::CacheCorrupt);
    rewrite_in_place(&payload, 0, &original);
    model.cache_load(&path).unwrap();
    assert_eq!(model.kv_cache_tokens().unwrap(), saved_tokens(&original));
}

/// Another thread rewrites the payload in place (same size, other bytes,
/// then the original bytes again) all the time while it is loaded over and
/// over: every load either fails with a cache status or loads exactly the
/// saved state; the simulator, which checks every byte, never sees other
/// bytes than those rkl checked. (When rkl hashed the file and gave the
/// runtime that file, this test saw the runtime read unchecked bytes in
/// about a quarter of the loads, the attacker in 79 of 80.)
#[test]
fn a_payload_rewritten_during_loads_never_reaches_the_runtime() {
    rewritten_during_loads(false);
}

#[test]
fn isolated_a_payload_rewritten_during_loads_never_reaches_the_runtime() {
    rewritten_during_loads(true);
}

fn rewritten_during_loads(isolated: bool) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let model = strict_model("cache-rewrite-race", 8192, 0, isolated);
    let dir = temp_dir("cache-rewrite-race");
    let path = saved(&model, &dir, "c.rklcache");
    let payload = dir.join(Manifest::read(&path).unwrap().payload.file);
    let original = std::fs::read(&payload).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, payload, original) = (stop.clone(), payload.clone(), original.clone());
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new().write(true).open(&payload).unwrap();
            let mut rng = 0x2545_F491_4F6C_DD1Du64;
            let mut rewrites = 0u64;
            while !stop.load(Ordering::Relaxed) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let len = 4096.min(original.len());
                let at = (rng % (original.len() - len + 1) as u64) as usize;
                let garbage: Vec<u8> = original[at..at + len].iter().map(|b| b ^ 0x5A).collect();
                file.write_all_at(&garbage, at as u64).unwrap();
                std::thread::sleep(std::time::Duration::from_micros(300));
                file.write_all_at(&original[at..at + len], at as u64).unwrap();
                std::thread::sleep(std::time::Duration::from_micros(300));
                rewrites += 1;
            }
            rewrites
        })
    };
    let started = std::time::Instant::now();
    let (mut loaded, mut refused, mut unchecked) = (0u32, 0u32, Vec::new());
    while (loaded + refused < 80 || loaded == 0 || refused == 0) && started.elapsed().as_secs() < 6 {
        match model.cache_load(&path) {
            Ok(_) => {
                loaded += 1;
                assert_eq!(model.kv_cache_tokens().unwrap(), saved_tokens(&original), "the saved state was loaded");
                model.cache_release().unwrap();
            }
            Err(e) if e.kind() == ErrorKind::CacheCorrupt => refused += 1,
            Err(e) => unchecked.push(format!("{e} ({:?})", e.kind())),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rewrites = writer.join().unwrap();
    let tries = loaded + refused + unchecked.len() as u32;
    eprintln!(
        "{tries} loads during {rewrites} rewrites: {loaded} loaded the saved state, {refused} refused as corrupt, {} read unchecked bytes",
        unchecked.len()
    );
    assert!(
        unchecked.is_empty(),
        "in {} of {tries} loads the runtime read bytes other than those checked: {unchecked:?}",
        unchecked.len()
    );
    assert!(loaded > 0 && refused > 0, "both outcomes must have happened: {loaded} loaded, {refused} refused");
    rewrite_in_place(&payload, 0, &original);
    model.cache_load(&path).unwrap();
}
