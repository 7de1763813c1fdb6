//! The loaded [`Runtime`]: opening the library (or finding it already
//! open), resolving its functions, detecting its release, and starting the
//! dispatcher thread that makes every call into it.

use super::default_params::default_params;
use super::detect;
use super::dispatch::Dispatcher;
use super::family::Family;
use super::layout;
use super::layout_common::{Layout, RunShape};
use super::symbols::{self, Api};
use crate::error::{Error, ErrorKind, Result};
use libloading::os::unix::Library;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The loader's name for the runtime when no path is configured.
pub const DEFAULT_RUNTIME: &str = "librkllmrt.so";

/// A loaded runtime: its functions, its release family and its dispatcher.
/// Runtimes stay loaded for the life of the process.
pub struct Runtime {
    id: usize,
    path: String,
    family: Family,
    /// The family's per-release code.
    pub(super) layout: &'static dyn Layout,
    /// What the default-param probe said, kept to judge later overrides.
    probe: std::result::Result<Family, String>,
    pub(super) api: Arc<Api>,
    pub(super) dispatcher: Dispatcher,
    raw_library: usize,
    /// The version the runtime printed at its first successful listen.
    pub(super) version: std::sync::OnceLock<String>,
    _library: Library,
}

static RUNTIMES: Mutex<Vec<Arc<Runtime>>> = Mutex::new(Vec::new());
static NEXT_RUNTIME_ID: AtomicUsize = AtomicUsize::new(1);

impl Runtime {
    /// Loads (or finds already loaded) the runtime at `path` and works out its
    /// release. `requested` is an explicit ABI that must agree with what the
    /// runtime shows, or stand in where detection is not certain.
    pub fn load(path: &str, requested: Option<Family>) -> Result<Arc<Runtime>> {
        let mut loaded = RUNTIMES.lock().unwrap_or_else(|p| p.into_inner());
        let raw = symbols::open_library(path)?.into_raw();
        if let Some(rt) = loaded.iter().find(|rt| rt.raw_library == raw as usize) {
            // SAFETY: `raw` came from `into_raw` just above; rebuilding the
            // Library and dropping it gives back the extra dlopen reference.
            drop(unsafe { Library::from_raw(raw) });
            let family = detect::decide(rt.probe.clone(), requested)
                .map_err(|why| Error::new(ErrorKind::RuntimeUnsupported, format!("runtime '{path}': {why}")))?;
            if family != rt.family {
                return Err(Error::new(
                    ErrorKind::RuntimeUnsupported,
                    format!(
                        "runtime '{}' is already in use as ABI {}; it cannot also be opened as {family}",
                        rt.path, rt.family
                    ),
                ));
            }
            return Ok(rt.clone());
        }
        // SAFETY: as above; from here the Library owns the reference.
        let library = unsafe { Library::from_raw(raw) };
        let runtime = Runtime::start(path, library, raw as usize, requested)?;
        loaded.push(runtime.clone());
        Ok(runtime)
    }

    fn start(path: &str, library: Library, raw_library: usize, requested: Option<Family>) -> Result<Arc<Runtime>> {
        let unsupported = |why: String| Error::new(ErrorKind::RuntimeUnsupported, format!("runtime '{path}': {why}"));
        // A library without even the core entry points is not a runtime of an
        // older release; say which symbols are missing.
        if !symbols::has_symbol(&library, "rkllm_init") || !symbols::has_symbol(&library, "rkllm_run") {
            return Err(symbols::resolve(&library, path, true).err().expect("core symbols are missing"));
        }
        let by_symbols = detect::family_from_symbols(detect::Symbols {
            has_clear_and_template: symbols::has_symbol(&library, symbols::CLEAR_KV_CACHE)
                && symbols::has_symbol(&library, symbols::CHAT_TEMPLATE),
            has_kv_cache_size: symbols::has_symbol(&library, symbols::KV_CACHE_SIZE),
        })
        .map_err(unsupported)?;
        let api = Arc::new(symbols::resolve(&library, path, by_symbols.is_none())?);
        let id = NEXT_RUNTIME_ID.fetch_add(1, Ordering::Relaxed);
        let dispatcher = Dispatcher::start(format!("rkl-runtime-{id}"))?;
        let probe_api = api.clone();
        // SAFETY: the symbol is rkllm_createDefaultParam.
        let image = dispatcher.call(move || unsafe { default_params(probe_api.create_default_param) })?;
        let image = image.map_err(&unsupported)?;
        let probed = detect::from_symbols_and_probe(by_symbols, detect::family_from_probe(&image));
        let family = detect::decide(probed.clone(), requested).map_err(unsupported)?;
        if by_symbols.is_some_and(|by_symbols| by_symbols != family) {
            // The symbols are certain: an override cannot make a 1.2.0
            // runtime speak another release's layout.
            return Err(unsupported(format!(
                "its symbols are those of release family 1.2.0 (1.2.0 or 1.2.1b1), not {family}; \
                 fix or unset RKL_RUNTIME_ABI / runtime_abi"
            )));
        }
        log::info!("loaded RKLLM runtime '{path}' as ABI {family}");
        Ok(Arc::new(Runtime {
            id,
            path: path.to_string(),
            family,
            layout: layout::of(family),
            probe: probed,
            api,
            dispatcher,
            raw_library,
            version: std::sync::OnceLock::new(),
            _library: library,
        }))
    }

    /// The runtime's version, as it printed it at init ("1.2.1"); `None` if
    /// it printed none.
    pub fn version(&self) -> Option<&str> {
        self.version.get().map(String::as_str)
    }

    /// A number unique to this runtime in the process.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The path (or name) it was loaded from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The release family in use.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Whether a run takes a per-run token limit (else rkl enforces one
    /// with an abort).
    pub fn limits_tokens_per_run(&self) -> bool {
        self.layout.limits_tokens_per_run()
    }

    /// Whether a run takes its own sampling parameters.
    pub fn samples_per_run(&self) -> bool {
        self.layout.samples_per_run()
    }

    /// Whether the runtime can take a run of `shape` (as far as its
    /// printed version tells); else why not.
    pub fn check_run(&self, shape: &RunShape) -> std::result::Result<(), String> {
        self.layout.check_run(shape, self.version())
    }

    /// Whether the runtime has `rkllm_get_kv_cache_size`,
    /// `rkllm_set_function_tools` and `rkllm_set_cross_attn_params`
    /// (1.2.1 and later).
    pub fn has_later_calls(&self) -> bool {
        self.api.get_kv_cache_size.is_some()
    }

    /// The error to report when the runtime got stuck in a call that never
    /// returned (see `dispatch::Watch`); `None` while it works.
    pub fn stuck(&self) -> Option<Error> {
        self.dispatcher.watch().stuck()
    }

    /// When the call the runtime is in last made progress (started, or a
    /// callback); `None` while it is idle.
    pub fn last_progress(&self) -> Option<std::time::Instant> {
        self.dispatcher.watch().last_progress()
    }
}
