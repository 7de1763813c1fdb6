//! Stress and leaks, in both modes.
//!
//! 1. 16 threads x 2 models x hundreds of generations with random aborts
//!    (`Model::abort` from other threads, `Stream` aborters), streams dropped
//!    mid-way, callbacks that stop, and models closed and reopened under the
//!    others' feet: no crash, no deadlock (a watchdog ends the process with
//!    what every thread was doing if the test overruns), no lost completion
//!    (every call returns: `Ok` with a finish reason, and exactly the reply
//!    when it ended normally, or `Closed` when its model was closed; a
//!    stream that fails says so once and then finishes with `Error`), and
//!    never two calls inside the runtime at once.
//!
//!    The same test runs in isolation mode, where a share of the operations
//!    also hit a worker crash: a third model whose runtime dies of SIGSEGV
//!    before token 8 of every reply, workers killed with SIGKILL under the
//!    others' feet, and explicit restarts. Those calls must fail with
//!    `RuntimeCrashed` naming the signal (a generation stopped by a restart
//!    ends `Aborted`), later calls must recover, and once every model is
//!    closed no worker process and no descriptor may be left.
//! 2. Resident memory flat across 10,000 generations (callbacks, streams,
//!    dropped streams, the C API, opens and closes): after a warm-up, VmRSS
//!    may grow by less than 2 MiB. The same probe, on a runtime that leaks 64
//!    KiB per run, must see the growth.
//!
//! Volume scales with `RKL_HARDENING_SCALE` (default 1 in the default ABI
//! run, a third in the 1.2 run, since `make check` runs the suite once per
//! ABI). The tests of this file run one at a time (they measure the process).

mod common;

use common::*;
use rkl::{Error, ErrorKind, FinishReason, GenerateRequest, Model, OpenConfig, RestartPolicy, StreamEvent};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// What each thread is doing, for the watchdog's diagnostic.
struct Board(Vec<Mutex<String>>);

impl Board {
    fn new(threads: usize) -> Board {
        Board((0..threads).map(|_| Mutex::new("not started".into())).collect())
    }
    fn set(&self, t: usize, what: String) {
        *self.0[t].lock().unwrap_or_else(|p| p.into_inner()) = what;
    }
    fn dump(&self) -> String {
        self.0
            .iter()
            .enumerate()
            .map(|(t, s)| format!("  thread {t}: {}\n", s.lock().unwrap_or_else(|p| p.into_inner())))
            .collect()
    }
}

/// Ends the process if `done` is not set within `limit`: a deadlock must
/// fail the run, with what every thread was doing, not hang it.
fn watchdog(what: String, limit: Duration, done: Arc<AtomicBool>, progress: Arc<AtomicU64>, board: Arc<Board>) {
    std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < limit {
            if done.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Past the harness's capture, which exiting would lose.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "{what}: not finished after {limit:?} ({} operations done): deadlock or livelock; the threads were at:\n{}",
            progress.load(Ordering::Relaxed),
            board.dump()
        );
        std::process::exit(3);
    });
}

const REPLY: &str = "{prompt}: Grüße, 世界 🎈 ok — a few more words";

fn expected(tag: &str, prompt: &str) -> String {
    format!("{tag} {}", REPLY.replace("{prompt}", prompt))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    InProcess,
    Isolated,
}

/// The crashing model's runtime dies of SIGSEGV before this token (0-based)
/// of every reply; the reply has more than 20 tokens.
const CRASH_TOKEN: u32 = 8;

/// How every call ended, for the report and the checks.
#[derive(Default, Debug)]
struct Tally {
    end: u64,
    aborted: u64,
    stopped: u64,
    max_tokens: u64,
    closed: u64,
    streams_dropped: u64,
    aborts_sent: u64,
    reopens: u64,
    /// Generations that failed with `RuntimeCrashed` (isolation mode).
    crashed: u64,
    /// Other calls that failed because a worker died or was restarted.
    calls_crashed: u64,
    /// Workers killed with SIGKILL, and restarts asked for.
    kills: u64,
    restarts_asked: u64,
    /// Generations asked for (each must end up in exactly one count above).
    asked: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.end += other.end;
        self.aborted += other.aborted;
        self.stopped += other.stopped;
        self.max_tokens += other.max_tokens;
        self.closed += other.closed;
        self.streams_dropped += other.streams_dropped;
        self.aborts_sent += other.aborts_sent;
        self.reopens += other.reopens;
        self.crashed += other.crashed;
        self.calls_crashed += other.calls_crashed;
        self.kills += other.kills;
        self.restarts_asked += other.restarts_asked;
        self.asked += other.asked;
    }
    fn finished(&mut self, finish: FinishReason) {
        match finish {
            FinishReason::End => self.end += 1,
            FinishReason::Aborted => self.aborted += 1,
            FinishReason::Stopped => self.stopped += 1,
            FinishReason::MaxTokens => self.max_tokens += 1,
            FinishReason::Error => panic!("a generation returned Ok with FinishReason::Error"),
        }
    }
    fn generations(&self) -> u64 {
        self.end + self.aborted + self.stopped + self.max_tokens + self.closed + self.crashed
    }
}

/// A model slot that threads may close and refill.
struct Slot {
    tag: &'static str,
    mode: Mode,
    /// Its runtime crashes in every reply (before `CRASH_TOKEN`).
    crashing: bool,
    lines: Vec<String>,
    model: RwLock<(Model, PathBuf)>,
    /// Workers of this slot killed by the test (SIGKILL) or restarted.
    kills: AtomicU64,
    /// Restarts of the models of this slot that were closed.
    closed_restarts: AtomicU32,
}

/// The configuration of a stress model in `mode`.
fn settings(mode: Mode, path: &Path) -> OpenConfig {
    let mut c = config(path);
    if mode == Mode::Isolated {
        c.isolated = true;
        c.host_path = Some(env!("CARGO_BIN_EXE_rkl-host").into());
        // Crashes are the point here: never stop restarting.
        c.restart = RestartPolicy { max_restarts: u32::MAX, window: Duration::from_secs(60) };
        // Generous: it ends a stuck worker (failing the test with Timeout)
        // before the test's watchdog would, and is watched under load.
        c.call_timeout = Some(Duration::from_secs(60));
    }
    c
}

impl Slot {
    fn new(mode: Mode, tag: &'static str, extra: &[&str]) -> Slot {
        let mut lines = vec![
            format!("reply = {tag} {REPLY}"),
            "time_scale = 1".into(),
            "prefill_us_per_token = 20".into(),
            "decode_us_per_token = 40".into(),
        ];
        lines.extend(extra.iter().map(|s| s.to_string()));
        let crashing = lines.iter().any(|l| l.starts_with("fault"));
        let (model, path) = Slot::open(mode, &lines, "stress");
        Slot {
            tag,
            mode,
            crashing,
            lines,
            model: RwLock::new((model, path)),
            kills: AtomicU64::new(0),
            closed_restarts: AtomicU32::new(0),
        }
    }
    fn open(mode: Mode, lines: &[String], tag: &str) -> (Model, PathBuf) {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let path = model_file(tag, &refs);
        (Model::open(&settings(mode, &path)).expect("open a stress model"), path)
    }
    fn current(&self) -> Model {
        self.model.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }
    fn path(&self) -> PathBuf {
        self.model.read().unwrap_or_else(|p| p.into_inner()).1.clone()
    }
    /// Closes the model and puts a fresh one in its place.
    fn reopen(&self) {
        let fresh = Slot::open(self.mode, &self.lines, "stress-reopen");
        let old = std::mem::replace(&mut *self.model.write().unwrap_or_else(|p| p.into_inner()), fresh);
        old.0.close().unwrap();
        self.closed_restarts.fetch_add(old.0.restarts(), Ordering::Relaxed);
    }
    /// Restarts of every model this slot had.
    fn restarts(&self) -> u32 {
        self.closed_restarts.load(Ordering::Relaxed) + self.current().restarts()
    }
    /// Kills the current worker, if one runs, with SIGKILL.
    fn kill_worker(&self, model: &Model) -> bool {
        let Some(pid) = model.worker_pid() else { return false };
        self.kills.fetch_add(1, Ordering::SeqCst);
        // SAFETY: kill(2) on a worker of this test. worker_pid() names only
        // a worker that has not been seen to end, and a worker is reaped only
        // after that, so the pid is not yet free for another process (short
        // of a whole pid-space wrap-around in between).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        true
    }

    /// Checks an error of a call on this slot: what the modes document, and
    /// nothing else. `generation`: it ended a generation.
    fn check_error(&self, e: &Error, generation: bool, tally: &mut Tally, at: &str) {
        match e.kind() {
            ErrorKind::Closed => {
                if generation {
                    tally.closed += 1;
                }
                return;
            }
            ErrorKind::RuntimeCrashed if self.mode == Mode::Isolated => {
                // Its own fault, or a worker this test killed.
                let signal_ok = if self.crashing {
                    e.message().contains("died of SIGSEGV")
                } else {
                    e.message().contains("died of SIGKILL") && self.kills.load(Ordering::SeqCst) > 0
                };
                assert!(signal_ok, "{at}: a crash nobody caused: {e}");
                assert!(!e.message().contains("not restarted automatically"), "{at}: {e}");
            }
            // A call (not a generation) in flight while the model was
            // restarted.
            ErrorKind::Aborted if self.mode == Mode::Isolated && !generation => {
                assert!(e.message().contains("restarted"), "{at}: {e}");
            }
            _ => panic!("{at}: {e} ({:?})", e.kind()),
        }
        if generation {
            tally.crashed += 1;
        } else {
            tally.calls_crashed += 1;
        }
    }
}

/// One thread's share of the work.
fn worker(t: usize, iterations: usize, slots: &[Slot], progress: &AtomicU64, board: &Board) -> Tally {
    let mut rng = Rng(0x5EED ^ (t as u64) << 20);
    let mut tally = Tally::default();
    for i in 0..iterations {
        progress.fetch_add(1, Ordering::Relaxed);
        // The crashing slot, if any, takes one operation in eight.
        let slot = match slots.len() {
            3 if rng.below(8) == 0 => &slots[2],
            _ => &slots[rng.below(2)],
        };
        let model = slot.current();
        let prompt = format!("t{t}-i{i}");
        let want = expected(slot.tag, &prompt);
        let action = rng.below(100);
        let at = format!("thread {t} iteration {i} action {action} on {} (worker {:?})", slot.tag, model.worker_pid());
        board.set(t, at.clone());
        match action {
            // Generate with a callback; sometimes stop it or abort the
            // model from inside it, sometimes a token limit.
            0..=59 => {
                tally.asked += 1;
                let stop_after = if rng.below(8) == 0 { Some(1 + rng.below(5)) } else { None };
                let abort_after = if rng.below(20) == 0 { Some(1 + rng.below(5)) } else { None };
                let mut request = GenerateRequest::new(prompt.clone());
                if rng.below(10) == 0 {
                    request.max_new_tokens = Some(1 + rng.below(6) as u32);
                }
                let mut text = String::new();
                let mut chunks = 0;
                let mut late_chunks = 0;
                let result = model.generate(&request, |c| {
                    if stop_after.or(abort_after).is_some_and(|n| chunks >= n) {
                        // The callback said stop, or Model::abort returned.
                        late_chunks += 1;
                    }
                    text.push_str(c);
                    chunks += 1;
                    if abort_after == Some(chunks) {
                        model.abort();
                    }
                    if stop_after.is_some_and(|n| chunks >= n) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                assert!(want.starts_with(&text), "{at}: {text:?} is not a prefix of {want:?}");
                assert_eq!(late_chunks, 0, "{at}: text delivered after a stop or an abort returned");
                if let (Ok(stats), Some(n)) = (&result, abort_after) {
                    if chunks >= n {
                        assert_ne!(
                            stats.finish,
                            FinishReason::End,
                            "{at}: aborted from the callback, yet ended normally"
                        );
                    }
                }
                match result {
                    Ok(stats) => {
                        tally.finished(stats.finish);
                        if stats.finish == FinishReason::End {
                            assert!(!slot.crashing, "{at}: a reply past the crash: {text:?}");
                            assert_eq!(text, want, "{at}");
                        }
                    }
                    Err(e) => slot.check_error(&e, true, &mut tally, &at),
                }
            }
            // A stream, read to the end or dropped mid-way, or aborted
            // through its aborter from another thread.
            60..=89 => {
                tally.asked += 1;
                let stream = model.stream(&GenerateRequest::new(prompt.clone()));
                let mut stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        slot.check_error(&e, true, &mut tally, &at);
                        continue;
                    }
                };
                let drop_after = (action >= 80).then(|| rng.below(4));
                let abort_from_afar = action < 65;
                let aborter = stream.aborter();
                let helper = abort_from_afar.then(|| {
                    let delay = Duration::from_micros(rng.below(1500) as u64);
                    std::thread::spawn(move || {
                        std::thread::sleep(delay);
                        aborter.abort();
                    })
                });
                let mut text = String::new();
                let mut pieces = 0;
                let mut failed = false;
                let finish = loop {
                    if drop_after.is_some_and(|n| pieces >= n) {
                        break None;
                    }
                    match stream.next_event(Some(Duration::from_secs(30))) {
                        Ok(StreamEvent::Text(c)) => {
                            text.push_str(&c);
                            pieces += 1;
                        }
                        Ok(StreamEvent::Finished(stats)) => break Some(stats.finish),
                        Ok(StreamEvent::Timeout) => panic!("{at}: no progress on a stream for 30 s"),
                        Err(e) => {
                            slot.check_error(&e, true, &mut tally, &at);
                            // Said once; then the stream is over.
                            match stream.next_event(Some(Duration::from_secs(30))) {
                                Ok(StreamEvent::Finished(stats)) => {
                                    assert_eq!(stats.finish, FinishReason::Error, "{at}")
                                }
                                other => panic!("{at}: after the error {e}: {other:?}"),
                            }
                            failed = true;
                            break None;
                        }
                    }
                };
                assert!(want.starts_with(&text), "{at}: {text:?} is not a prefix of {want:?}");
                match finish {
                    Some(f) => {
                        tally.finished(f);
                        if f == FinishReason::End {
                            assert!(!slot.crashing, "{at}: a reply past the crash: {text:?}");
                            assert_eq!(text, want, "{at}");
                        }
                    }
                    None if !failed => {
                        tally.streams_dropped += 1;
                        tally.aborted += 1;
                    }
                    None => {}
                }
                drop(stream);
                if let Some(h) = helper {
                    h.join().unwrap();
                    tally.aborts_sent += 1;
                }
            }
            // Abort whatever runs on the model, from this thread.
            90..=92 => {
                model.abort();
                tally.aborts_sent += 1;
            }
            // Isolation mode: restart the worker of a model, or kill it.
            96 if slot.mode == Mode::Isolated => match model.restart() {
                Ok(()) => tally.restarts_asked += 1,
                Err(e) => slot.check_error(&e, false, &mut tally, &at),
            },
            97 | 98 if slot.mode == Mode::Isolated && !slot.crashing => {
                if slot.kill_worker(&model) {
                    tally.kills += 1;
                }
            }
            // Other calls.
            93..=98 => match model.kv_cache_tokens() {
                Ok(_) => {}
                Err(e) => slot.check_error(&e, false, &mut tally, &at),
            },
            // Close the model under everyone's feet and open a new one.
            _ => {
                slot.reopen();
                tally.reopens += 1;
            }
        }
        board.set(t, format!("between operations (last: {at})"));
    }
    board.set(t, "done".into());
    tally
}

/// Child processes of this one named `rkl-host` (zombies included).
fn host_children() -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
        let Some((comm, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") ")) else { continue };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) && comm.starts_with("rkl-host") {
            found.push(pid);
        }
    }
    found
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Waits (bounded, generously) until `check` holds; the reader threads of
/// ended workers let go of their sockets a moment after the model closed.
fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let started = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if started.elapsed() > Duration::from_secs(10) => panic!("{what}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Generates on `model` and returns the text and result.
fn generate_text(model: &Model, prompt: &str) -> (String, rkl::Result<rkl::Stats>) {
    let mut text = String::new();
    let result = model.generate(&GenerateRequest::new(prompt), |c| {
        text.push_str(c);
        ControlFlow::Continue(())
    });
    (text, result)
}

/// After the storm: every model of an isolated run works again on its own,
/// after a crash of each kind; the crashing model once its fault is gone.
fn assert_isolated_models_recover(slots: &[Slot]) {
    for slot in slots {
        let model = slot.current();
        let before;
        if slot.crashing {
            let (text, result) = generate_text(&model, "last");
            before = model.restarts();
            let e = result.expect_err("the crashing model crashes");
            assert_eq!(e.kind(), ErrorKind::RuntimeCrashed, "{e}");
            assert!(e.message().contains("died of SIGSEGV"), "{e}");
            assert!(expected(slot.tag, "last").starts_with(&text));
            // Without the fault, the next call's new worker works.
            let path = slot.path();
            let healed: String = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("fault"))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(&path, healed).unwrap();
        } else {
            // Killed while idle, a worker is replaced by the next call.
            model.kv_cache_tokens().unwrap();
            before = model.restarts();
            let pid = model.worker_pid().expect("a worker runs");
            assert!(slot.kill_worker(&model));
            eventually("the killed worker is seen to end", || match model.worker_pid() {
                Some(p) if p == pid => Err(format!("worker {p} still listed")),
                _ => Ok(()),
            });
        }
        let (text, result) = generate_text(&model, "last");
        let stats = result.unwrap_or_else(|e| panic!("{}: no recovery: {e}", slot.tag));
        assert_eq!((stats.finish, text), (FinishReason::End, expected(slot.tag, "last")), "{}", slot.tag);
        assert_eq!(model.restarts(), before + 1, "{}", slot.tag);
    }
}

fn stress(mode: Mode) {
    let _serial = serial();
    let lib = sim_library("");
    let fds_before = open_fds();
    let mut slots = vec![
        Slot::new(mode, "A", &["waiting = carry"]),
        Slot::new(mode, "B", &["waiting = repeat", "callback_thread = foreign"]),
    ];
    if mode == Mode::Isolated {
        slots.push(Slot::new(mode, "C", &[&format!("fault = segv@token:{CRASH_TOKEN}")]));
    }
    let threads = 16;
    let per_thread = match mode {
        Mode::InProcess => scaled(200),
        Mode::Isolated => scaled(ISOLATED_PER_THREAD),
    };
    let done = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let board = Arc::new(Board::new(threads));
    watchdog(format!("stress {mode:?}"), watchdog_limit(), done.clone(), progress.clone(), board.clone());
    let started = Instant::now();
    let mut total = Tally::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (slots, progress, board) = (&slots, &progress, &board);
                scope.spawn(move || worker(t, per_thread, slots, progress, board))
            })
            .collect();
        for h in handles {
            total.add(&h.join().expect("a worker panicked"));
        }
    });
    let elapsed = started.elapsed();
    assert_eq!(progress.load(Ordering::Relaxed), (threads * per_thread) as u64, "every operation completed");
    assert_eq!(total.generations(), total.asked, "every generation ended exactly once: {total:?}");
    let restarts: u32 = slots.iter().map(Slot::restarts).sum();
    if mode == Mode::Isolated {
        assert_isolated_models_recover(&slots);
    }
    done.store(true, Ordering::Release);
    for slot in &slots {
        let model = slot.current();
        model.close().unwrap();
        assert_eq!(model.worker_pid(), None);
    }
    drop(slots);
    match mode {
        Mode::InProcess => assert_eq!(sim_stats(&lib)[0], 0, "two calls were inside the runtime at once"),
        Mode::Isolated => {
            // (Each worker has its own simulator; its counters die with it.)
            eventually("no worker process is left", || match host_children() {
                left if left.is_empty() => Ok(()),
                left => Err(format!("rkl-host children still there: {left:?}")),
            });
            eventually("no descriptor is left", || match open_fds() {
                n if n <= fds_before => Ok(()),
                n => Err(format!("{n} descriptors open, {fds_before} before")),
            });
        }
    }
    let mode_name = match mode {
        Mode::InProcess => "in-process",
        Mode::Isolated => "isolated",
    };
    let crashes = match mode {
        Mode::InProcess => String::new(),
        Mode::Isolated => format!(
            "; {} generations and {} other calls failed by a worker crash ({} workers killed, {} restarts asked, {} restarts in all)",
            total.crashed, total.calls_crashed, total.kills, total.restarts_asked, restarts
        ),
    };
    report(&format!(
        "stress {mode_name}: {threads} threads x {} models, {} operations, {} generations in {:.1} s: {} whole, {} aborted ({} streams dropped), \
         {} stopped by the callback, {} at the token limit, {} refused as closed; {} aborts sent, {} closes and reopens{crashes}",
        if mode == Mode::Isolated { "2 (+1 crashing)" } else { "2" },
        threads * per_thread,
        total.generations(),
        elapsed.as_secs_f64(),
        total.end,
        total.aborted,
        total.streams_dropped,
        total.stopped,
        total.max_tokens,
        total.closed,
        total.aborts_sent,
        total.reopens
    ));
    assert!(total.end > total.generations() / 5, "too few generations ended normally to check their text: {total:?}");
    if mode == Mode::Isolated {
        assert!(total.crashed > 0 && total.kills > 0 && total.restarts_asked > 0, "no crash was exercised: {total:?}");
        assert!(restarts > 0, "no worker was restarted: {total:?}");
    }
}

/// How long a stress run may take before its watchdog ends it: far more
/// than it needs on a loaded 2-core machine (a few seconds at scale 1).
fn watchdog_limit() -> Duration {
    Duration::from_secs_f64(240.0 * scale().max(1.0))
}

/// Operations per thread in isolation mode, before scaling.
const ISOLATED_PER_THREAD: usize = 200;

#[test]
fn sixteen_threads_two_models_random_aborts_drops_and_reopens() {
    stress(Mode::InProcess);
}

/// Set in the child process that runs the isolated stress test.
const CHILD: &str = "RKL_STRESS_CHILD";

/// Lines the workers print by the hundred (each prints the runtime's version
/// at init, and the crashing model's runtime announces each crash).
fn worker_noise(line: &str) -> bool {
    line.starts_with("I rkllm: rkllm-runtime version") || line.starts_with("E rkllm-sim: injected fault: SIGSEGV")
}

#[test]
fn isolated_sixteen_threads_two_models_random_aborts_drops_reopens_and_crashes() {
    const NAME: &str = "isolated_sixteen_threads_two_models_random_aborts_drops_reopens_and_crashes";
    if std::env::var_os(CHILD).is_some() {
        stress(Mode::Isolated);
        return;
    }
    // The workers write to the test's own stdout and stderr; the test runs
    // in a child process (this binary again) whose output is filtered here.
    let _serial = serial();
    let output = temp_dir("stress-isolated").join("output.txt");
    let file = std::fs::File::create(&output).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    // The child's watchdog ends it with a diagnostic; this one is for a
    // child that cannot even do that.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > watchdog_limit() + Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&output).unwrap_or_default();
    let ok = status.is_some_and(|s| s.success());
    let shown: Vec<&str> = text.lines().filter(|l| !worker_noise(l) && (!ok || l.starts_with("[ABI"))).collect();
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{}", shown.join("\n"));
    assert!(ok, "the isolated stress test failed ({status:?}; its output is above, without the workers' version and crash lines)");
}

/// Threads calling the model while it is closed: each call works or says
/// `Closed`. (A call that passed the model's liveness check while a close
/// was starting was queued behind `rkllm_destroy` and reached the destroyed
/// handle: the simulator refused it, a real runtime would have used freed
/// memory. Found by the stress test.)
fn calls_racing_close(mode: Mode, rounds: usize) {
    let _serial = serial();
    let path = model_file("race-close", &["reply = hi"]);
    for round in 0..rounds {
        let model = Model::open(&settings(mode, &path)).unwrap();
        let callers: Vec<_> = (0..4)
            .map(|k| {
                let model = model.clone();
                std::thread::spawn(move || {
                    for call in 0.. {
                        let result = match (k + call) % 3 {
                            0 => model.kv_cache_tokens().map(drop),
                            1 => model.clear_history(false),
                            _ => model.set_chat_template("", "<u>", "</u>"),
                        };
                        match result {
                            Ok(()) => {}
                            Err(e) if e.kind() == ErrorKind::Closed => return call,
                            Err(e) => panic!("{mode:?} round {round}: a call racing close: {e} ({:?})", e.kind()),
                        }
                    }
                    unreachable!()
                })
            })
            .collect();
        // Let them get going (any moment will do).
        std::thread::sleep(Duration::from_micros(100 + 50 * (round % 8) as u64));
        model.close().unwrap();
        for caller in callers {
            caller.join().expect("a caller failed");
        }
    }
    if mode == Mode::InProcess {
        assert_eq!(sim_stats(&sim_library(""))[0], 0);
    }
}

#[test]
fn calls_racing_close_never_reach_a_destroyed_handle() {
    calls_racing_close(Mode::InProcess, 300);
}

#[test]
fn isolated_calls_racing_close_never_reach_a_destroyed_handle() {
    calls_racing_close(Mode::Isolated, 100);
}

// ------------------------------------------------------------------ memory

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One generation of the mix used for the memory test.
fn one_generation(model: &Model, c_model: *mut rkl::ffi::rkl_model, i: usize) {
    let prompt = format!("p{}", i % 97);
    match i % 10 {
        0..=4 => {
            let mut n = 0;
            let stats = model
                .generate(&GenerateRequest::new(prompt), |c| {
                    n += c.len();
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(stats.finish, FinishReason::End);
        }
        5 | 6 => {
            let text: String = model.stream(&GenerateRequest::new(prompt)).unwrap().map(|c| c.unwrap()).collect();
            assert!(text.starts_with("ok"));
        }
        7 => {
            // Dropped after the first piece.
            let mut s = model.stream(&GenerateRequest::new(prompt)).unwrap();
            let _ = s.next_event(Some(Duration::from_secs(10))).unwrap();
        }
        _ => c_generate(c_model, &prompt, i % 20 == 8),
    }
}

/// A generation through the C API, by callback or by stream.
fn c_generate(model: *mut rkl::ffi::rkl_model, prompt: &str, stream: bool) {
    use rkl::ffi::*;
    use std::ffi::{c_char, c_int, c_void, CString};
    unsafe extern "C" fn count(_: *const c_char, len: usize, userdata: *mut c_void) -> c_int {
        // SAFETY: userdata is a usize counter.
        unsafe { *userdata.cast::<usize>() += len };
        0
    }
    let prompt = CString::new(prompt).unwrap();
    // SAFETY: valid structs and strings for every call.
    unsafe {
        let mut g: rkl_generate_params = std::mem::zeroed();
        assert_eq!(rkl_generate_params_init(&mut g, std::mem::size_of::<rkl_generate_params>()), RKL_OK);
        g.prompt = prompt.as_ptr();
        if stream {
            let mut s = std::ptr::null_mut();
            assert_eq!(rkl_stream_open(model, &g, &mut s), RKL_OK);
            loop {
                let (mut t, mut n) = (std::ptr::null(), 0usize);
                assert_eq!(rkl_stream_next(s, -1, &mut t, &mut n), RKL_OK);
                if t.is_null() {
                    break;
                }
            }
            let mut st: rkl_stats = std::mem::zeroed();
            st.struct_size = std::mem::size_of::<rkl_stats>();
            assert_eq!(rkl_stream_stats(s, &mut st), RKL_OK);
            assert_eq!(rkl_stream_close(s), RKL_OK);
        } else {
            let mut n = 0usize;
            let mut st: rkl_stats = std::mem::zeroed();
            st.struct_size = std::mem::size_of::<rkl_stats>();
            assert_eq!(rkl_generate(model, &g, Some(count), (&mut n as *mut usize).cast(), &mut st), RKL_OK);
            assert!(n > 0);
        }
    }
}

fn c_open(path: &std::path::Path) -> *mut rkl::ffi::rkl_model {
    use rkl::ffi::*;
    let path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let runtime = std::ffi::CString::new(sim_library("").to_str().unwrap()).unwrap();
    let mut m = std::ptr::null_mut();
    // SAFETY: a struct of our size, strings alive for the call.
    unsafe {
        let mut p: rkl_open_params = std::mem::zeroed();
        assert_eq!(rkl_open_params_init(&mut p, std::mem::size_of::<rkl_open_params>()), RKL_OK);
        p.model_path = path.as_ptr();
        p.runtime_path = runtime.as_ptr();
        assert_eq!(rkl_open(&p, &mut m), RKL_OK);
    }
    m
}

/// Runs `count` generations of the mix on a model of `lines`, reopening the
/// model every `reopen_every`; returns (RSS after warm-up, highest RSS
/// seen, RSS at the end), in KiB.
fn measure(lines: &[&str], warmup: usize, count: usize, reopen_every: usize) -> (u64, u64, u64) {
    let path = model_file("stress-rss", lines);
    let mut model = Model::open(&config(&path)).unwrap();
    let mut c_model = c_open(&path);
    let trace = std::env::var_os("RKL_STRESS_RSS_TRACE").is_some();
    let mut base = 0;
    let mut peak = 0;
    // The warm-up runs the same mix, reopens included, so that allocator
    // pools and caches reach their steady size before measuring.
    for i in 0..warmup + count {
        if i == warmup {
            base = rss_kib();
            peak = base;
        }
        one_generation(&model, c_model, i);
        if i % reopen_every == reopen_every - 1 {
            model.close().unwrap();
            model = Model::open(&config(&path)).unwrap();
            // SAFETY: a live handle, closed once.
            assert_eq!(unsafe { rkl::ffi::rkl_close(c_model) }, rkl::ffi::RKL_OK);
            c_model = c_open(&path);
        }
        if i >= warmup && i % 250 == 0 {
            peak = peak.max(rss_kib());
        }
        if trace && i % 500 == 0 {
            eprintln!("rss {i} {}", rss_kib());
        }
    }
    let end = rss_kib();
    model.close().unwrap();
    // SAFETY: a live handle.
    assert_eq!(unsafe { rkl::ffi::rkl_close(c_model) }, rkl::ffi::RKL_OK);
    (base, peak.max(end), end)
}

/// Generations before the first measurement.
const WARMUP: usize = 4_000;

#[test]
fn memory_stays_flat_across_ten_thousand_generations() {
    let _serial = serial();
    // Cheap (about a second), so 10,000 in both ABI runs unless asked.
    let count = match std::env::var("RKL_HARDENING_SCALE").ok().and_then(|s| s.parse::<f64>().ok()) {
        Some(s) if s > 0.0 => ((10_000.0 * s) as usize).max(1),
        _ => 10_000,
    };
    let runs_before = sim_stats(&sim_library(""))[2];
    let started = Instant::now();
    let (base, peak, end) = measure(&["reply = ok {prompt}"], WARMUP, count, 1_000);
    let elapsed = started.elapsed();
    let runs = sim_stats(&sim_library(""))[2] - runs_before;
    assert!(runs >= (WARMUP + count) as u64, "only {runs} runs reached the runtime");
    let growth = peak.saturating_sub(base);
    report(&format!(
        "stress: RSS across {count} generations (after {WARMUP} to warm up; {runs} runs in all) in {:.1} s: {base} KiB after warm-up, \
         {peak} KiB at most, {end} KiB at the end: growth {growth} KiB",
        elapsed.as_secs_f64()
    ));
    // Under qemu-user (make check-aarch64) the process's RSS also holds the
    // emulator's code cache, which grows as late paths get translated; that
    // run sets its own allowance.
    let allowed = env_number("RKL_RSS_GROWTH_KIB").unwrap_or(2048);
    assert!(growth < allowed, "resident memory grew by {growth} KiB across {count} generations (allowed {allowed})");
    assert_eq!(sim_stats(&sim_library(""))[0], 0);
}

#[test]
fn the_memory_probe_sees_a_runtime_that_leaks() {
    let _serial = serial();
    // 64 KiB per run over 200 runs: 12.5 MiB that the probe must see.
    let (base, peak, _) = measure(&["reply = ok {prompt}", "grow_kb_per_run = 64"], 10, 200, 1_000);
    let growth = peak.saturating_sub(base);
    assert!(growth > 8 * 1024, "the probe missed a 12.5 MiB leak: {growth} KiB");
}
