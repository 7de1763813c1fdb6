//! `rkl serve`'s configuration: a JSON file (`--config`), JSON because the
//! library already parses it (no new crate) and every OpenAI client speaks
//! it; the command line's options win over the file.
//!
//! ```json
//! {
//!   "listen": "127.0.0.1:8080",
//!   "api_key": "secret",
//!   "cache_dir": "/var/cache/rkl",
//!   "max_queue": 64,
//!   "models": [
//!     {"id": "qwen3", "path": "qwen3-0.6b.rkllm", "max_context_len": 4096},
//!     {"id": "tiny", "path": "tiny.rkllm", "isolated": false, "auto_cache": false,
//!      "sampling": {"temperature": 0.7}}
//!   ]
//! }
//! ```
//!
//! Relative model paths are relative to the file's directory.

use super::metrics::{HttpMetrics, ModelMetrics};
use super::{Served, Server};
use crate::args::Args;
use rkl::{AutoCache, Model, OpenConfig, RestartPolicy};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Bytes all automatic caches of a model may take (LRU beyond).
    #[serde(default = "default_cache_max")]
    pub cache_max_bytes: u64,
    #[serde(default = "yes")]
    pub auto_cache: bool,
    #[serde(default = "yes")]
    pub isolated: bool,
    /// Automatic worker restarts per minute (isolation mode).
    #[serde(default = "default_restarts")]
    pub max_restarts: u32,
    #[serde(default = "default_queue")]
    pub max_queue: usize,
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_connections")]
    pub max_connections: usize,
    #[serde(default)]
    pub runtime: Option<PathBuf>,
    #[serde(default)]
    pub models: Vec<ModelEntry>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub id: String,
    pub path: PathBuf,
    #[serde(default)]
    pub runtime: Option<PathBuf>,
    #[serde(default)]
    pub runtime_abi: Option<String>,
    #[serde(default)]
    pub isolated: Option<bool>,
    #[serde(default)]
    pub auto_cache: Option<bool>,
    #[serde(default)]
    pub max_context_len: Option<i32>,
    /// The model's own limit of new tokens per request.
    #[serde(default)]
    pub max_new_tokens: Option<i32>,
    /// Kill and restart a worker that makes no progress for this long.
    #[serde(default)]
    pub call_timeout_ms: Option<u64>,
    /// Sampling set when the model is opened (what a 1.2 runtime allows).
    #[serde(default)]
    pub sampling: Option<OpenSampling>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct OpenSampling {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub repeat_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_cache_max() -> u64 {
    4 << 30
}
fn yes() -> bool {
    true
}
fn default_restarts() -> u32 {
    10
}
fn default_queue() -> usize {
    64
}
fn default_body() -> usize {
    1 << 20
}
fn default_connections() -> usize {
    512
}

/// A model id from its file name: `qwen3-0.6b.rkllm` → `qwen3-0.6b`.
fn id_of(path: &Path) -> String {
    path.file_stem().map_or_else(|| path.to_string_lossy().into_owned(), |s| s.to_string_lossy().into_owned())
}

impl ServeConfig {
    pub fn from_args(args: &Args) -> Result<ServeConfig, String> {
        let mut config: ServeConfig = match args.value("--config") {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
                let mut c: ServeConfig = serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
                let base = Path::new(file).parent().unwrap_or(Path::new("."));
                for m in &mut c.models {
                    if m.path.is_relative() {
                        m.path = base.join(&m.path);
                    }
                }
                c
            }
            None => serde_json::from_str("{}").map_err(|e| e.to_string())?,
        };
        for p in &args.positional {
            let path = PathBuf::from(p);
            config.models.push(ModelEntry {
                id: id_of(&path),
                path,
                runtime: None,
                runtime_abi: None,
                isolated: None,
                auto_cache: None,
                max_context_len: None,
                max_new_tokens: None,
                call_timeout_ms: None,
                sampling: None,
            });
        }
        if let Some(v) = args.value("--listen") {
            config.listen = v.to_string();
        }
        if let Some(v) = args.value("--api-key").map(String::from).or_else(|| std::env::var("RKL_API_KEY").ok()) {
            config.api_key = Some(v).filter(|k| !k.is_empty());
        }
        if let Some(v) = args.value("--cache-dir") {
            config.cache_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = args.value("--runtime") {
            config.runtime = Some(PathBuf::from(v));
        }
        if args.flag("--no-auto-cache") {
            config.auto_cache = false;
        }
        if args.flag("--in-process") {
            config.isolated = false;
        }
        if let Some(n) = args.parsed("--max-queue").map_err(|u| u.0)? {
            config.max_queue = n;
        }
        if let Some(n) = args.parsed("--max-body-bytes").map_err(|u| u.0)? {
            config.max_body_bytes = n;
        }
        let mut ids: Vec<&str> = config.models.iter().map(|m| m.id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("model id '{}' is given twice", w[0]));
        }
        if config.models.iter().any(|m| m.id.is_empty() || m.id.contains('/')) {
            return Err("a model id must be non-empty and without '/'".into());
        }
        Ok(config)
    }
}

fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("rkl");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache").join("rkl"),
        None => std::env::temp_dir().join("rkl-cache"),
    }
}

/// Makes `dir` (and its parents) owner-only where rkl makes it.
fn make_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot make {}: {e}", dir.display()))
}

/// Opens every model of `config`.
pub fn open(config: &ServeConfig) -> Result<Server, String> {
    let cache_root = config.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let mut models = Vec::new();
    for entry in &config.models {
        let mut open = OpenConfig::new(&entry.path);
        open.runtime_path = entry.runtime.clone().or_else(|| config.runtime.clone());
        if let Some(abi) = &entry.runtime_abi {
            open.runtime_abi = Some(abi.parse().map_err(|e| format!("model '{}': runtime_abi: {e}", entry.id))?);
        }
        open.isolated = entry.isolated.unwrap_or(config.isolated);
        open.restart = RestartPolicy { max_restarts: config.max_restarts, window: Duration::from_secs(60) };
        open.call_timeout = entry.call_timeout_ms.map(Duration::from_millis);
        open.params.max_context_len = entry.max_context_len;
        open.params.max_new_tokens = entry.max_new_tokens;
        if let Some(s) = &entry.sampling {
            open.params.temperature = s.temperature;
            open.params.top_p = s.top_p;
            open.params.top_k = s.top_k;
            open.params.repeat_penalty = s.repeat_penalty;
            open.params.frequency_penalty = s.frequency_penalty;
            open.params.presence_penalty = s.presence_penalty;
        }
        let model_dir = cache_root.join(&entry.id);
        let auto = entry.auto_cache.unwrap_or(config.auto_cache);
        let auto_dir = auto.then(|| model_dir.join("auto"));
        if let Some(dir) = &auto_dir {
            make_dir(dir)?;
            open.auto_cache = Some(AutoCache { dir: dir.clone(), max_bytes: config.cache_max_bytes });
        }
        let named_dir = model_dir.join("named");
        make_dir(&named_dir)?;
        let model = Model::open(&open).map_err(|e| format!("model '{}': {e}", entry.id))?;
        models.push(Arc::new(Served {
            id: entry.id.clone(),
            model,
            auto_cache: auto,
            named_dir,
            auto_dir,
            turn: Mutex::new(()),
            queued: AtomicUsize::new(0),
            max_queue: config.max_queue.max(1),
            metrics: ModelMetrics::default(),
        }));
    }
    Ok(Server {
        models,
        api_key: config.api_key.clone(),
        max_body: config.max_body_bytes,
        started_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        http: HttpMetrics::default(),
        connections: AtomicUsize::new(0),
        max_connections: config.max_connections.max(1),
    })
}
