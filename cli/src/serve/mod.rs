//! `rkl serve`: an OpenAI-compatible HTTP server on rkl.
//!
//! Models come from the command line (`rkl serve a.rkllm b.rkllm`, ids from
//! the file names) or a JSON configuration file (`--config`, see
//! [`config`]). Each model runs in isolation mode by default (a worker
//! process that restarts after a crash), with automatic caching of the
//! system part of every prompt. One generation runs per model at a time;
//! up to `max_queue` requests wait their turn, more get 429.
//!
//! Endpoints: `POST /v1/chat/completions`, `POST /v1/completions` (both with
//! `"stream": true` as server-sent events), `GET /v1/models`, `GET /health`,
//! `GET /metrics` (Prometheus text), `POST /v1/cache/{model}/generate-binary`,
//! `GET /v1/cache/{model}`, `DELETE /v1/cache/{model}/{name}`.

pub mod config;
mod generate;
mod http;
mod metrics;
mod openai;
mod routes;

use crate::args::{Args, Usage};
use crate::{CmdResult, Failure};
use config::ServeConfig;
use metrics::ModelMetrics;
use rkl::Model;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub const HELP: &str = "\
usage: rkl serve [MODEL...] [--config FILE] [options]

Serves the models over an OpenAI-compatible HTTP API:
  POST /v1/chat/completions, POST /v1/completions   (\"stream\": true for server-sent events)
  GET  /v1/models, GET /health, GET /metrics (Prometheus text)
  POST /v1/cache/{model}/generate-binary  {\"cache_name\", \"prompt\"}: save a named prompt cache
  GET  /v1/cache/{model}, DELETE /v1/cache/{model}/{name}

Options (the configuration file's fields of the same name win over defaults,
these win over the file):
  --config FILE         JSON: {\"listen\", \"api_key\", \"models\": [{\"id\", \"path\", ...}], ...}
  --listen ADDR         where to listen (default 127.0.0.1:8080; port 0 picks one)
  --api-key KEY         require `Authorization: Bearer KEY` (also RKL_API_KEY); /health stays open
  --cache-dir DIR       prompt caches (default $XDG_CACHE_HOME/rkl or ~/.cache/rkl)
  --no-auto-cache       do not cache the system part of prompts
  --in-process          run the runtime in this process (default: a worker process per model)
  --max-queue N         requests per model running or waiting (default 64; more get 429)
  --max-body-bytes N    largest request body (default 1 MiB; larger get 413)
  --runtime PATH        the runtime library (else RKL_RUNTIME)
";

/// One served model.
pub struct Served {
    pub id: String,
    pub model: Model,
    pub auto_cache: bool,
    /// Named prompt caches (the cache endpoints).
    pub named_dir: PathBuf,
    /// Automatic caches.
    pub auto_dir: Option<PathBuf>,
    turn: Mutex<()>,
    /// Requests running or waiting for their turn.
    queued: AtomicUsize,
    max_queue: usize,
    pub metrics: ModelMetrics,
}

/// A request's turn on its model: held while it generates.
pub struct Turn<'a> {
    served: &'a Served,
    _guard: MutexGuard<'a, ()>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.served.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Served {
    /// Waits for the model's turn; `None` (answer 429) when `max_queue`
    /// requests are already running or waiting.
    pub fn turn(&self) -> Option<Turn<'_>> {
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queue {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let guard = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        Some(Turn { served: self, _guard: guard })
    }

    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// The manifest path of the named cache `name`, which must be a plain
    /// name: letters, digits, `.`, `_`, `-`, not starting with `.`.
    pub fn named_cache_path(&self, name: &str) -> Result<PathBuf, String> {
        let ok = !name.is_empty()
            && name.len() <= 100
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(format!(
                "cache name '{}' is not allowed: use 1-100 letters, digits, '.', '_' or '-', not starting with '.'",
                name.escape_debug()
            ));
        }
        Ok(self.named_dir.join(format!("{name}.rklcache")))
    }
}

/// The server: its models and settings.
pub struct Server {
    pub models: Vec<Arc<Served>>,
    pub api_key: Option<String>,
    pub max_body: usize,
    pub started_unix: u64,
    pub http: metrics::HttpMetrics,
    connections: AtomicUsize,
    max_connections: usize,
}

impl Server {
    pub fn find(&self, id: &str) -> Option<&Arc<Served>> {
        self.models.iter().find(|m| m.id == id)
    }
}

pub fn main(argv: &[String]) -> CmdResult {
    let args = Args::parse(
        argv,
        &["--config", "--listen", "--api-key", "--cache-dir", "--max-queue", "--max-body-bytes", "--runtime"],
        &["--no-auto-cache", "--in-process", "--help"],
    )?;
    if args.flag("--help") {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let config = ServeConfig::from_args(&args).map_err(Failure::Failed)?;
    if config.models.is_empty() {
        return Err(Usage("rkl serve needs at least one MODEL or a --config file with \"models\"".into()).into());
    }
    let server = Arc::new(config::open(&config).map_err(Failure::Failed)?);
    let listener = TcpListener::bind(&config.listen)
        .map_err(|e| Failure::Failed(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener.local_addr()?;
    // The first line on stdout says where to connect (tests read it).
    println!("rkl serve: listening on http://{addr}");
    for m in &server.models {
        println!(
            "rkl serve: model '{}' ({}, runtime {}, {}, automatic caching {})",
            m.id,
            m.model.model_path().display(),
            m.model.family(),
            if m.model.is_isolated() { "isolated" } else { "in-process" },
            if m.auto_cache { "on" } else { "off" }
        );
    }
    if !addr.ip().is_loopback() && server.api_key.is_none() {
        eprintln!("rkl serve: warning: listening on {addr} without --api-key; anyone who can reach it can use it");
    }
    for conn in listener.incoming() {
        let Ok(socket) = conn else { continue };
        let n = server.connections.fetch_add(1, Ordering::SeqCst);
        if n >= server.max_connections {
            server.connections.fetch_sub(1, Ordering::SeqCst);
            let mut s = socket;
            let _ = routes::error_response(&mut s, 503, "too many connections; try again later", "overloaded", true);
            continue;
        }
        let server = server.clone();
        let spawned = std::thread::Builder::new().name("rkl-serve-conn".into()).spawn(move || {
            serve_connection(&server, socket);
            server.connections.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            eprintln!("rkl serve: cannot start a thread for a connection");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Answers requests on one connection until it closes.
fn serve_connection(server: &Server, socket: TcpStream) {
    let _ = socket.set_nodelay(true);
    // An idle keep-alive connection is closed after a while.
    let _ = socket.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(read_half) = socket.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut out = socket;
    loop {
        match http::read_request(&mut reader, server.max_body) {
            Ok(req) => {
                let close = req.close;
                let keep = routes::handle(server, &req, &mut out);
                if close || !keep {
                    return;
                }
            }
            Err(http::ReadError::Closed) => return,
            Err(http::ReadError::Reject(status, msg)) => {
                server.http.count(status);
                let _ = routes::error_response(&mut out, status, &msg, "invalid_request", true);
                return;
            }
        }
    }
}
