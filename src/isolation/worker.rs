//! The worker's side (`rkl-host`): open the model in-process and serve the
//! parent's requests until it closes the model or goes away.
//!
//! The main thread only reads requests, so an abort is served at once even
//! while the runtime is busy. A generation is queued on the runtime by the
//! main thread (keeping the parent's order) and pumped to the parent by a
//! thread of its own; every other call runs on a thread of its own. (A
//! generation whose automatic prompt cache may have to be saved first is
//! started on its thread too, so aborts are read meanwhile.) Each
//! token callback returns to the runtime only once the pump has sent its
//! text, so a runtime that crashes after a callback cannot take that text
//! with it: the parent gets it, then the crash, as a caller in-process
//! would have got it before the process died.

use super::process::WORKER_ARG;
use super::protocol::{read_message, write_message, Call, Reply, Request, Value};
use crate::error::Result;
use crate::local::{LocalAborter, LocalModel, LocalStream};
use crate::locked::locked;
use crate::outcome::StreamEvent;
use std::collections::HashMap;
use std::io::BufReader;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The body of `rkl-host`; returns the exit code.
pub fn worker_main() -> i32 {
    if std::env::args().nth(1).as_deref() != Some(WORKER_ARG) {
        eprintln!(
            "rkl-host runs the RKLLM runtime for rkl's isolation mode; librkl starts it \
             (found beside the library or through RKL_HOST). It is not meant to be run by hand."
        );
        return 2;
    }
    let _ = env_logger::Builder::from_env(env_logger::Env::new().filter_or("RKL_LOG", "warn")).try_init();
    // Die of the signal itself, so the parent can name it: Rust's
    // stack-overflow handler returns from a SIGSEGV it does not own, which
    // turns a raised one (as a runtime's own handler or the simulator
    // raises it) into the abort() that follows.
    for signal in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: restoring the default disposition of a signal; no other
        // thread exists yet.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    match take_socket() {
        Ok(socket) => serve(socket),
        Err(e) => {
            eprintln!("rkl-host: cannot take the socket from stdin: {e}");
            2
        }
    }
}

/// Takes the socket rkl passed as stdin and puts /dev/null in its place, so
/// nothing the runtime does with stdin can touch the protocol.
fn take_socket() -> std::io::Result<UnixStream> {
    // SAFETY: fd 0 is the socket the parent passed; nothing else in this
    // process owns it (this runs first, before any other thread exists).
    let stdin = unsafe { OwnedFd::from_raw_fd(0) };
    let socket = stdin.try_clone()?; // a new descriptor, close-on-exec
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: both descriptors are open; dup2 makes 0 refer to /dev/null.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Descriptor 0 now is /dev/null and must stay open as stdin.
    std::mem::forget(stdin);
    Ok(UnixStream::from(socket))
}

type Out = Arc<Mutex<UnixStream>>;

fn send(out: &Out, reply: &Reply) {
    let mut socket = out.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = write_message(&mut *socket, reply) {
        // The parent is gone; the main thread sees the end and exits.
        log::debug!("rkl-host: cannot reply: {e}");
    }
}

/// Serves one model over `socket`; returns the exit code.
pub fn serve(socket: UnixStream) -> i32 {
    let out: Out = match socket.try_clone() {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => {
            eprintln!("rkl-host: {e}");
            return 2;
        }
    };
    let mut input = BufReader::new(socket);
    crate::runtime::RunShared::hand_over_each_token();
    let model = match read_message::<Request>(&mut input) {
        Ok(Some(Request::Open { id, config })) => match LocalModel::open(&config) {
            Ok(model) => {
                let opened = Reply::Opened {
                    id,
                    family: model.family(),
                    runtime_path: model.runtime_path().to_string(),
                    runtime_version: model.runtime_version().map(str::to_string),
                };
                send(&out, &opened);
                model
            }
            Err(error) => {
                send(&out, &Reply::Failed { id, error });
                return 1;
            }
        },
        Ok(None) => return 0,
        Ok(Some(other)) => {
            eprintln!("rkl-host: expected Open first, got {other:?}");
            return 2;
        }
        Err(e) => {
            eprintln!("rkl-host: {e}");
            return 2;
        }
    };
    let busy = Arc::new(AtomicUsize::new(0));
    start_heartbeat(&model, out.clone(), busy.clone());
    let runs: Runs = Arc::default();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let request = match read_message::<Request>(&mut input) {
            Ok(Some(request)) => request,
            // The parent is gone. Exit at once: the runtime may be stuck,
            // and nobody waits for anything any more.
            Ok(None) | Err(_) => std::process::exit(0),
        };
        threads.retain(|t| !t.is_finished());
        match request {
            Request::Generate { id, request } if model.caches_automatically(&request) => {
                // Choosing the automatic cache may save one (a prefill):
                // on a thread of its own, so aborts are still read here.
                locked(&runs).insert(id, Run::Preparing { aborted: false });
                let (model, out, runs, busy) = (model.clone(), out.clone(), runs.clone(), Busy::start(&busy));
                threads.push(std::thread::spawn(move || {
                    let _busy = busy;
                    let started = model.stream(&request);
                    if let Some(stream) = accept(id, started, &out, &runs) {
                        pump(id, stream, &out, &runs);
                    }
                }));
            }
            Request::Generate { id, request } => {
                locked(&runs).insert(id, Run::Preparing { aborted: false });
                if let Some(stream) = accept(id, model.stream(&request), &out, &runs) {
                    let (out, runs, busy) = (out.clone(), runs.clone(), Busy::start(&busy));
                    threads.push(std::thread::spawn(move || {
                        pump(id, stream, &out, &runs);
                        drop(busy);
                    }));
                }
            }
            Request::Abort { id } => match locked(&runs).get_mut(&id) {
                Some(Run::Running(run)) => run.abort(),
                Some(Run::Preparing { aborted }) => *aborted = true,
                None => {}
            },
            Request::AbortAll => model.abort(),
            Request::Call { id, call } => {
                // Taken now, in the order of the requests: an AbortAll read
                // after this call stops a save even when it is served before
                // the call's thread gets to run.
                let aborts = model.inner().abort_count();
                let (model, out, busy) = (model.clone(), out.clone(), Busy::start(&busy));
                threads.push(std::thread::spawn(move || {
                    let _busy = busy;
                    let reply = match execute(&model, call, aborts) {
                        Ok(value) => Reply::Done { id, value },
                        Err(error) => Reply::Failed { id, error },
                    };
                    send(&out, &reply);
                }));
            }
            Request::Close => {
                if let Err(e) = model.close() {
                    log::warn!("rkl-host: closing the model: {e}");
                }
                // Let every generation and call report its end first.
                for t in threads {
                    let _ = t.join();
                }
                return 0;
            }
            Request::Open { .. } => log::warn!("rkl-host: ignored a second Open"),
        }
    }
}

/// How often the heartbeat looks at the runtime.
const HEARTBEAT: Duration = Duration::from_millis(20);

/// Counts a request in progress in the worker while it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn start(count: &Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::SeqCst);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Tells the parent of progress that no reply shows (its call_timeout
/// watchdog counts replies as progress) while requests are in progress:
/// a runtime callback whose text is dropped here (after an abort, past a
/// token limit), or work of rkl's own outside the runtime (a prompt cache's
/// checksum and sync). Silent while the runtime is inside a call without
/// progress — that is what the parent's call_timeout is for.
fn start_heartbeat(model: &LocalModel, out: Out, busy: Arc<AtomicUsize>) {
    let runtime = model.runtime().clone();
    let spawned = std::thread::Builder::new().name("rkl-heartbeat".into()).spawn(move || {
        let mut reported = None;
        let mut work = 0;
        loop {
            std::thread::sleep(HEARTBEAT);
            if busy.load(Ordering::SeqCst) == 0 {
                continue;
            }
            let progressed = match runtime.last_progress() {
                // The runtime is idle: the time goes to rkl's own work.
                None => true,
                Some(last) if reported != Some(last) => {
                    reported = Some(last);
                    true
                }
                Some(_) => false,
            };
            if progressed {
                work += 1;
                send(&out, &Reply::Progress { work });
            }
        }
    });
    if let Err(e) = spawned {
        log::warn!("rkl-host: no heartbeat thread: {e}");
    }
}

/// Forwards one generation's text and end to the parent.
/// The generations of the worker: being started (an abort that comes then
/// is applied once it runs) or running.
enum Run {
    Preparing { aborted: bool },
    Running(LocalAborter),
}

type Runs = Arc<Mutex<HashMap<u64, Run>>>;

/// Registers a started generation and tells the parent, or reports why it
/// did not start. An abort that came while it was being started stops it.
fn accept(id: u64, started: Result<LocalStream>, out: &Out, runs: &Runs) -> Option<LocalStream> {
    match started {
        Ok(stream) => {
            let aborter = stream.aborter();
            let aborted = matches!(
                locked(runs).insert(id, Run::Running(stream.aborter())),
                Some(Run::Preparing { aborted: true })
            );
            send(out, &Reply::Accepted { id });
            if aborted {
                aborter.abort();
            }
            Some(stream)
        }
        Err(error) => {
            locked(runs).remove(&id);
            send(out, &Reply::Failed { id, error });
            None
        }
    }
}

fn pump(id: u64, mut stream: LocalStream, out: &Out, runs: &Mutex<HashMap<u64, Run>>) {
    loop {
        match stream.next_event(None) {
            Ok(StreamEvent::Text(text)) => send(out, &Reply::Text { id, text, tokens: stream.tokens() }),
            Ok(StreamEvent::Finished(stats)) => {
                send(out, &Reply::Finished { id, stats });
                break;
            }
            Ok(StreamEvent::Timeout) => {}
            Err(error) => {
                send(out, &Reply::Failed { id, error });
                break;
            }
        }
    }
    locked(runs).remove(&id);
}

/// Runs `call`; a save is stopped by the aborts since the model's abort
/// count was `aborts`.
fn execute(model: &LocalModel, call: Call, aborts: u64) -> Result<Value> {
    let unit = |_| Value::Unit;
    match call {
        Call::ClearHistory { keep_system_prompt } => model.clear_history(keep_system_prompt).map(unit),
        Call::KvCacheTokens => model.kv_cache_tokens().map(Value::Tokens),
        Call::SetChatTemplate { system, prefix, postfix } => {
            model.set_chat_template(&system, &prefix, &postfix).map(unit)
        }
        Call::SetFunctionTools { system, tools_json, tool_response } => {
            model.set_function_tools(&system, &tools_json, &tool_response).map(unit)
        }
        Call::LoadLora { path, name, scale } => model.load_lora(&path, &name, scale).map(unit),
        Call::CacheSave { request, path } => {
            model.cache_save_after(&request, &path, aborts).map(|info| Value::Cache(Box::new(info)))
        }
        Call::CacheLoad { path } => model.cache_load(&path).map(|info| Value::Cache(Box::new(info))),
        Call::CacheRelease => model.cache_release().map(unit),
        Call::Output { request, output } => model.output(&request, output).map(|t| Value::Tensor(Box::new(t))),
    }
}
