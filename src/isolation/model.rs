//! `IsolatedModel`: the isolation-mode backend of [`crate::Model`]. Every
//! method is a request to the worker; a worker that ended is replaced on
//! the next call, within the restart policy, and the model's setup (chat
//! template, function tools, LoRA adapters, loaded prompt cache) is
//! restored in the new one. The KV history is not.

use super::client::{EndReason, Event, Limits, RequestFlags, Submitted, Worker};
use super::locate::locate;
use super::protocol::{Call, Reply, Request, Value};
use super::stream::IsolatedStream;
use crate::cache::CacheInfo;
use crate::callback_scope::in_callback_of;
use crate::config::{GenerateRequest, OpenConfig, RestartPolicy};
use crate::error::{Error, ErrorKind, Result};
use crate::locked::locked;
use crate::outcome::{Output, Stats, Tensor};
use crate::runtime::Family;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

/// Callback keys of isolated models: the top bit set, so they never equal a
/// runtime id (the in-process keys).
static NEXT_KEY: AtomicUsize = AtomicUsize::new(1);
const KEY_BIT: usize = 1 << (usize::BITS - 1);

/// What a new worker is given again after a restart, in this order.
#[derive(Clone, Default)]
struct Setup {
    chat_template: Option<Call>,
    function_tools: Option<Call>,
    /// By adapter name; loading a name again replaces it.
    loras: Vec<(String, Call)>,
    /// The prompt cache to load.
    cache: Option<PathBuf>,
}

impl Setup {
    fn calls(&self) -> Vec<(&'static str, Call)> {
        let mut calls = Vec::new();
        calls.extend(self.chat_template.clone().map(|c| ("the chat template", c)));
        calls.extend(self.function_tools.clone().map(|c| ("the function tools", c)));
        calls.extend(self.loras.iter().map(|(_, c)| ("a LoRA adapter", c.clone())));
        calls.extend(self.cache.clone().map(|path| ("the prompt cache", Call::CacheLoad { path })));
        calls
    }
}

struct Inner {
    key: usize,
    model_path: PathBuf,
    runtime_path: String,
    runtime_version: Option<String>,
    family: Family,
    program: PathBuf,
    cwd: PathBuf,
    /// The in-process configuration the worker opens the model with.
    worker_config: OpenConfig,
    limits: Limits,
    policy: RestartPolicy,
    current: Mutex<Option<Arc<Worker>>>,
    /// Held while a worker is being started; when automatic restarts happened.
    restarting: Mutex<VecDeque<Instant>>,
    setup: Mutex<Setup>,
    /// The flags of the model's streams that still exist, whichever worker
    /// they ran on: `abort`, `restart` and `close` stop them on this side at
    /// once, so no text of theirs is delivered after those return.
    streams: Mutex<Vec<Weak<RequestFlags>>>,
    closed: AtomicBool,
    restarts: AtomicU32,
}

/// How many times a request that found its worker gone is sent again.
const RESUBMITS: u32 = 8;

/// An open model whose runtime runs in a worker process.
#[derive(Clone)]
pub(crate) struct IsolatedModel {
    inner: Arc<Inner>,
}

/// The answer to a request that waits for one reply.
fn answer(events: &crossbeam_channel::Receiver<Event>, during: &str, run: bool) -> Result<Reply> {
    match events.recv() {
        Ok(Event::Reply(Reply::Failed { error, .. })) => Err(error),
        Ok(Event::Reply(reply)) => Ok(reply),
        Ok(Event::Gone(death, aborted)) if run && aborted.is_some() && death.ends_aborted_runs() => {
            Err(Error::new(ErrorKind::Aborted, format!("{during} was aborted")))
        }
        Ok(Event::Gone(death, _)) => Err(death.error(during)),
        Err(_) => Err(Error::new(ErrorKind::Internal, format!("the worker connection dropped {during}"))),
    }
}

/// Starts a worker and opens the model in it; returns it with the family
/// and runtime path it reported.
fn start_worker(
    program: &Path,
    cwd: &Path,
    config: &OpenConfig,
    limits: Limits,
) -> Result<(Arc<Worker>, Family, String, Option<String>)> {
    let worker = Worker::spawn(program, cwd, limits)?;
    let config = Box::new(config.clone());
    let events = worker.submit(false, Arc::default(), |id| Request::Open { id, config })?.events;
    match answer(&events, "opening the model", false)? {
        Reply::Opened { family, runtime_path, runtime_version, .. } => {
            Ok((worker, family, runtime_path, runtime_version))
        }
        other => Err(Error::new(ErrorKind::Internal, format!("the worker answered Open with {other:?}"))),
    }
}

impl IsolatedModel {
    /// Checks the configuration as in-process, starts the worker and opens
    /// the model in it.
    pub fn open(config: &OpenConfig) -> Result<IsolatedModel> {
        config.checked_model_path()?;
        config.params.validate()?;
        if config.hooks.any() {
            return Err(Error::new(
                ErrorKind::NotSupported,
                "tokenizer and embedding callbacks run in-process only: isolation mode's worker process cannot \
                 call functions of this one",
            ));
        }
        let runtime_path = config.resolved_runtime_path()?;
        let runtime_abi = config.resolved_abi()?;
        let program = locate(config.host_path.as_deref())?;
        let cwd = std::env::current_dir().map_err(|e| {
            Error::from_os(ErrorKind::Io, format!("cannot read the current directory for the worker: {e}"), &e)
        })?;
        let worker_config = OpenConfig {
            model_path: config.model_path.clone(),
            runtime_path: Some(runtime_path.into()),
            runtime_abi,
            params: config.params.clone(),
            isolated: false,
            // The parent enforces the timeout by killing the worker; inside,
            // the runtime's thread must never be given up on.
            call_timeout: None,
            abort_grace: config.abort_grace,
            restart: RestartPolicy::default(),
            host_path: None,
            // The worker caches for itself, in the same directory.
            auto_cache: config.auto_cache.clone(),
            media_tags: config.media_tags.clone(),
            hooks: Default::default(),
        };
        let limits = Limits { call_timeout: config.call_timeout, abort_grace: config.abort_grace };
        let (worker, family, runtime_path, runtime_version) = start_worker(&program, &cwd, &worker_config, limits)?;
        Ok(IsolatedModel {
            inner: Arc::new(Inner {
                key: KEY_BIT | NEXT_KEY.fetch_add(1, Ordering::Relaxed),
                model_path: config.model_path.clone(),
                runtime_path,
                runtime_version,
                family,
                program,
                cwd,
                worker_config,
                limits,
                policy: config.restart,
                current: Mutex::new(Some(worker)),
                restarting: Mutex::new(VecDeque::new()),
                setup: Mutex::new(Setup::default()),
                streams: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
                restarts: AtomicU32::new(0),
            }),
        })
    }

    pub fn family(&self) -> Family {
        self.inner.family
    }

    pub fn runtime_path(&self) -> &str {
        &self.inner.runtime_path
    }

    pub fn runtime_version(&self) -> Option<&str> {
        self.inner.runtime_version.as_deref()
    }

    pub fn model_path(&self) -> &Path {
        &self.inner.model_path
    }

    pub fn callback_key(&self) -> usize {
        self.inner.key
    }

    pub fn worker_pid(&self) -> Option<u32> {
        locked(&self.inner.current).as_ref().filter(|w| !w.is_gone()).map(|w| w.pid())
    }

    pub fn restarts(&self) -> u32 {
        self.inner.restarts.load(Ordering::Relaxed)
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    fn check_usable(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::new(ErrorKind::Closed, "the model is closed"));
        }
        if in_callback_of(self.inner.key) {
            return Err(Error::new(
                ErrorKind::Reentrant,
                "called from inside a chunk callback of a generation on the same model; \
                 only abort is allowed there (the callback's return value can stop the generation)",
            ));
        }
        Ok(())
    }

    fn current(&self) -> Option<Arc<Worker>> {
        locked(&self.inner.current).clone()
    }

    /// The live worker, or a new one when it ended (within the policy).
    fn worker(&self) -> Result<Arc<Worker>> {
        if let Some(w) = self.current().filter(|w| !w.is_gone()) {
            return Ok(w);
        }
        let mut recent = locked(&self.inner.restarting);
        // Another caller may have restarted it while this one waited.
        let previous = self.current();
        if let Some(w) = previous.as_ref().filter(|w| !w.is_gone()) {
            return Ok(w.clone());
        }
        if self.is_closed() {
            return Err(Error::new(ErrorKind::Closed, "the model is closed"));
        }
        let how = previous.and_then(|w| w.death()).map_or_else(|| "it stopped".to_string(), |d| d.summary());
        let now = Instant::now();
        let window = self.inner.policy.window;
        recent.retain(|t| now.duration_since(*t) < window);
        if recent.len() >= self.inner.policy.max_restarts as usize {
            return Err(Error::new(
                ErrorKind::RuntimeCrashed,
                format!(
                    "the runtime process ended ({how}) and was restarted {} times within {} s, the limit; \
                     it is not restarted automatically again (restart the model to try again)",
                    recent.len(),
                    window.as_secs()
                ),
            ));
        }
        recent.push_back(now);
        log::warn!("restarting the runtime process ({how})");
        self.start_again()
    }

    /// Starts a new worker, restores the setup, and makes it current.
    /// Called with `restarting` held.
    fn start_again(&self) -> Result<Arc<Worker>> {
        let inner = &self.inner;
        let (worker, _, _, _) = start_worker(&inner.program, &inner.cwd, &inner.worker_config, inner.limits)?;
        // Held until the new worker is installed: a setup call that records
        // its change meanwhile then sees the new worker and sends it again.
        let setup = locked(&inner.setup);
        for (what, call) in setup.calls() {
            let run = |call: Call| -> Result<Reply> {
                let events = worker.submit(false, Arc::default(), |id| Request::Call { id, call })?.events;
                answer(&events, "restoring the model's setup", false)
            };
            if let Err(e) = run(call) {
                worker.close();
                return Err(Error::new(
                    e.kind(),
                    format!("the runtime was restarted but restoring {what} failed: {}", e.message()),
                ));
            }
        }
        inner.restarts.fetch_add(1, Ordering::Relaxed);
        *locked(&inner.current) = Some(worker.clone());
        drop(setup);
        if self.is_closed() {
            // Closed while this started: do not leave it running.
            worker.close();
            return Err(Error::new(ErrorKind::Closed, "the model is closed"));
        }
        Ok(worker)
    }

    /// Stops the worker and starts a new one (not counted by the policy,
    /// whose count it resets).
    pub fn restart(&self) -> Result<()> {
        self.check_usable()?;
        let mut recent = locked(&self.inner.restarting);
        // Its generations end aborted (other calls in flight fail with
        // `Aborted`); also one that reached the old worker as it was being
        // killed: no text of theirs comes after this returns.
        self.abort_streams();
        if let Some(old) = self.current() {
            old.kill(EndReason::Restart);
            old.wait_death();
        }
        self.abort_streams();
        recent.clear();
        self.start_again().map(|_| ())
    }

    /// Sends a request to the live worker. A request that finds its worker
    /// ended, or being ended by a restart, was never sent: it goes to the
    /// next worker (the one the restart starts, or a new one after a crash,
    /// within the policy), up to [`RESUBMITS`] times (restarts asked for
    /// from other threads may follow each other).
    fn submit(
        &self,
        run: bool,
        flags: Arc<RequestFlags>,
        make: impl Fn(u64) -> Request,
    ) -> Result<(Arc<Worker>, Submitted)> {
        let mut worker = self.worker()?;
        let mut resubmits = 0;
        loop {
            match worker.submit(run, flags.clone(), &make) {
                Ok(submitted) => return Ok((worker, submitted)),
                Err(_) if worker.is_gone() && resubmits < RESUBMITS => {
                    resubmits += 1;
                    worker = self.worker()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs one call in the worker. `run`: it runs a generation (abortable).
    fn call(&self, during: &str, run: bool, call: Call) -> Result<Value> {
        self.check_usable()?;
        let (_, submitted) = self.submit(run, Arc::default(), |id| Request::Call { id, call: call.clone() })?;
        match answer(&submitted.events, during, run)? {
            Reply::Done { value, .. } => Ok(value),
            other => Err(Error::new(ErrorKind::Internal, format!("the worker answered {during} with {other:?}"))),
        }
    }

    /// Runs a call that changes what a restart must restore, and records
    /// the change with `record` once the worker has done it. A restart that
    /// came between the answer and the record set its new worker up
    /// without the change (`start_again` replays the setup and installs the
    /// worker under the setup lock): the call then goes to the new worker.
    fn setup_call(&self, during: &str, call: Call, record: impl Fn(&mut Setup)) -> Result<Value> {
        let mut resent = 0;
        loop {
            self.check_usable()?;
            let (worker, submitted) =
                self.submit(false, Arc::default(), |id| Request::Call { id, call: call.clone() })?;
            let value = match answer(&submitted.events, during, false)? {
                Reply::Done { value, .. } => value,
                other => {
                    return Err(Error::new(ErrorKind::Internal, format!("the worker answered {during} with {other:?}")))
                }
            };
            log::trace!("{during}: done by worker {}", worker.pid());
            let mut setup = self.setup();
            record(&mut setup);
            let same_worker = self.current().is_some_and(|current| Arc::ptr_eq(&current, &worker));
            drop(setup);
            if same_worker || resent == RESUBMITS {
                return Ok(value);
            }
            resent += 1;
        }
    }

    fn setup(&self) -> MutexGuard<'_, Setup> {
        locked(&self.inner.setup)
    }

    pub fn stream(&self, request: &GenerateRequest) -> Result<IsolatedStream> {
        self.check_usable()?;
        // Checked here too: JSON has no NaN or infinity, so the worker would
        // see such a value as unset.
        if let Some(sampling) = &request.sampling {
            sampling.validate()?;
        }
        let started_at = Instant::now();
        // Registered before it is sent, and the model is looked at again
        // after: `close` (which marks the model closed, then aborts every
        // registered stream) either aborts this one or it is refused here.
        let flags = Arc::new(RequestFlags::default());
        {
            let mut streams = locked(&self.inner.streams);
            streams.retain(|s| s.strong_count() > 0);
            streams.push(Arc::downgrade(&flags));
        }
        if self.is_closed() {
            return Err(Error::new(ErrorKind::Closed, "the model is closed"));
        }
        let (worker, submitted) = self.submit(true, flags, |id| Request::Generate { id, request: request.clone() })?;
        let first = match submitted.events.recv() {
            Ok(Event::Reply(Reply::Accepted { .. })) => None,
            Ok(Event::Reply(Reply::Failed { error, .. })) => return Err(error),
            // The worker may die of the run before its acceptance got out;
            // the stream reports that, as it would a moment later.
            Ok(gone @ Event::Gone(..)) => Some(gone),
            Ok(other) => {
                return Err(Error::new(ErrorKind::Internal, format!("the worker answered Generate with {other:?}")))
            }
            Err(_) => {
                return Err(Error::new(ErrorKind::Internal, "the worker connection dropped starting a generation"))
            }
        };
        Ok(IsolatedStream::new(self.clone(), worker, submitted, first, started_at))
    }

    /// Marks every stream of the model as aborted; returns at once.
    fn abort_streams(&self) {
        let now = Instant::now();
        for flags in locked(&self.inner.streams).iter().filter_map(Weak::upgrade) {
            flags.abort(now);
        }
    }

    pub fn abort(&self) {
        self.abort_streams();
        if let Some(worker) = self.current() {
            worker.abort_all();
        }
    }

    pub fn clear_history(&self, keep_system_prompt: bool) -> Result<()> {
        // As in-process, clearing also drops a loaded prompt cache.
        self.setup_call("clear_history", Call::ClearHistory { keep_system_prompt }, |setup| setup.cache = None)?;
        Ok(())
    }

    pub fn kv_cache_tokens(&self) -> Result<u32> {
        match self.call("kv_cache_tokens", false, Call::KvCacheTokens)? {
            Value::Tokens(n) => Ok(n),
            other => Err(Error::new(ErrorKind::Internal, format!("kv_cache_tokens answered {other:?}"))),
        }
    }

    pub fn set_chat_template(&self, system: &str, prefix: &str, postfix: &str) -> Result<()> {
        let call = Call::SetChatTemplate { system: system.into(), prefix: prefix.into(), postfix: postfix.into() };
        self.setup_call("set_chat_template", call.clone(), |setup| setup.chat_template = Some(call.clone()))?;
        Ok(())
    }

    pub fn set_function_tools(&self, system: &str, tools_json: &str, tool_response: &str) -> Result<()> {
        let call = Call::SetFunctionTools {
            system: system.into(),
            tools_json: tools_json.into(),
            tool_response: tool_response.into(),
        };
        self.setup_call("set_function_tools", call.clone(), |setup| setup.function_tools = Some(call.clone()))?;
        Ok(())
    }

    pub fn load_lora(&self, path: &Path, name: &str, scale: f32) -> Result<()> {
        if !scale.is_finite() {
            return Err(Error::invalid(format!("LoRA scale {scale} is not finite")));
        }
        let call = Call::LoadLora { path: path.to_path_buf(), name: name.into(), scale };
        self.setup_call("load_lora", call.clone(), |setup| {
            setup.loras.retain(|(n, _)| n != name);
            setup.loras.push((name.to_string(), call.clone()));
        })?;
        Ok(())
    }

    pub fn cache_save(&self, request: &GenerateRequest, path: &Path) -> Result<CacheInfo> {
        let call = Call::CacheSave { request: request.clone(), path: path.to_path_buf() };
        match self.call("saving the prompt cache", true, call)? {
            Value::Cache(info) => Ok(*info),
            other => Err(Error::new(ErrorKind::Internal, format!("cache_save answered {other:?}"))),
        }
    }

    pub fn output(&self, request: &GenerateRequest, output: Output) -> Result<(Tensor, Stats)> {
        let call = Call::Output { request: request.clone(), output };
        match self.call("computing the run's floats", true, call)? {
            Value::Tensor(result) => Ok(*result),
            other => Err(Error::new(ErrorKind::Internal, format!("output answered {other:?}"))),
        }
    }

    pub fn cache_load(&self, path: &Path) -> Result<CacheInfo> {
        let call = Call::CacheLoad { path: path.to_path_buf() };
        match self.setup_call("loading the prompt cache", call, |setup| setup.cache = Some(path.to_path_buf()))? {
            Value::Cache(info) => Ok(*info),
            other => Err(Error::new(ErrorKind::Internal, format!("cache_load answered {other:?}"))),
        }
    }

    pub fn cache_release(&self) -> Result<()> {
        self.setup_call("cache_release", Call::CacheRelease, |setup| setup.cache = None)?;
        Ok(())
    }

    /// Closes the model in the worker and lets it exit (killed if it has not
    /// within the abort grace). Generations in flight end aborted.
    pub fn close(&self) -> Result<()> {
        if in_callback_of(self.inner.key) {
            return Err(Error::new(
                ErrorKind::Reentrant,
                "cannot close a model from inside one of its chunk callbacks",
            ));
        }
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // As in-process, its generations end aborted.
        self.abort_streams();
        // Wait for a restart in progress, so its worker is closed too.
        let _restarting = locked(&self.inner.restarting);
        if let Some(worker) = locked(&self.inner.current).take() {
            worker.close();
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(worker) = self.current.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            worker.close();
        }
    }
}
