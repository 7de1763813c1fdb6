//! Counters for `GET /metrics`, in Prometheus' text format.

use super::generate::Outcome;
use super::Server;
use rkl::CacheUse;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// TTFT histogram buckets, seconds.
const TTFT_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
pub struct ModelMetrics {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub rejected: AtomicU64,
    pub disconnected: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    cache_hits: AtomicU64,
    cache_saves: AtomicU64,
    ttft_buckets: [AtomicU64; TTFT_BUCKETS.len()],
    ttft_count: AtomicU64,
    ttft_sum_us: AtomicU64,
    decode_tps_bits: AtomicU64,
    prefill_tps_bits: AtomicU64,
}

impl ModelMetrics {
    pub fn record(&self, o: &Outcome) {
        self.ok.fetch_add(1, Relaxed);
        self.prompt_tokens.fetch_add(o.stats.prefill_tokens as u64, Relaxed);
        self.completion_tokens.fetch_add(o.stats.tokens as u64, Relaxed);
        match o.stats.cache {
            CacheUse::Hit => self.cache_hits.fetch_add(1, Relaxed),
            CacheUse::Saved => self.cache_saves.fetch_add(1, Relaxed),
            CacheUse::None => 0,
        };
        if let Some(t) = o.ttft {
            self.observe_ttft(t);
        }
        if o.stats.decode_ms > 0.0 {
            let tps = o.stats.decode_tokens as f64 * 1000.0 / o.stats.decode_ms;
            self.decode_tps_bits.store(tps.to_bits(), Relaxed);
        }
        if o.stats.prefill_ms > 0.0 {
            let tps = o.stats.prefill_tokens as f64 * 1000.0 / o.stats.prefill_ms;
            self.prefill_tps_bits.store(tps.to_bits(), Relaxed);
        }
    }

    fn observe_ttft(&self, t: Duration) {
        let s = t.as_secs_f64();
        for (i, le) in TTFT_BUCKETS.iter().enumerate() {
            if s <= *le {
                self.ttft_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.ttft_count.fetch_add(1, Relaxed);
        self.ttft_sum_us.fetch_add(t.as_micros() as u64, Relaxed);
    }
}

/// Answers by status code.
#[derive(Default)]
pub struct HttpMetrics {
    by_status: Mutex<Vec<(u16, u64)>>,
}

impl HttpMetrics {
    pub fn count(&self, status: u16) {
        let mut all = self.by_status.lock().unwrap_or_else(|p| p.into_inner());
        match all.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => {
                all.push((status, 1));
                all.sort_unstable();
            }
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn render(server: &Server) -> String {
    let mut out = String::new();
    let each = |out: &mut String, name: &str, f: &dyn Fn(&super::Served) -> String| {
        for m in &server.models {
            let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", m.id, f(m));
        }
    };
    family(&mut out, "rkl_queue_depth", "gauge", "Requests running or waiting for their model.");
    each(&mut out, "rkl_queue_depth", &|m| m.queue_depth().to_string());
    family(&mut out, "rkl_requests_total", "counter", "Generation requests by outcome.");
    for m in &server.models {
        let x = &m.metrics;
        for (outcome, n) in
            [("ok", &x.ok), ("failed", &x.failed), ("rejected", &x.rejected), ("disconnected", &x.disconnected)]
        {
            let _ = writeln!(out, "rkl_requests_total{{model=\"{}\",outcome=\"{outcome}\"}} {}", m.id, n.load(Relaxed));
        }
    }
    family(&mut out, "rkl_prompt_tokens_total", "counter", "Prompt tokens prefilled (not counting cached ones).");
    each(&mut out, "rkl_prompt_tokens_total", &|m| m.metrics.prompt_tokens.load(Relaxed).to_string());
    family(&mut out, "rkl_completion_tokens_total", "counter", "Tokens generated.");
    each(&mut out, "rkl_completion_tokens_total", &|m| m.metrics.completion_tokens.load(Relaxed).to_string());
    family(&mut out, "rkl_decode_tokens_per_second", "gauge", "Decode speed of the last request, from the runtime.");
    each(&mut out, "rkl_decode_tokens_per_second", &|m| {
        f64::from_bits(m.metrics.decode_tps_bits.load(Relaxed)).to_string()
    });
    family(&mut out, "rkl_prefill_tokens_per_second", "gauge", "Prefill speed of the last request, from the runtime.");
    each(&mut out, "rkl_prefill_tokens_per_second", &|m| {
        f64::from_bits(m.metrics.prefill_tps_bits.load(Relaxed)).to_string()
    });
    family(&mut out, "rkl_ttft_seconds", "histogram", "Time from the request to its first text, queue included.");
    for m in &server.models {
        let x = &m.metrics;
        for (i, le) in TTFT_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "rkl_ttft_seconds_bucket{{model=\"{}\",le=\"{le}\"}} {}",
                m.id,
                x.ttft_buckets[i].load(Relaxed)
            );
        }
        let count = x.ttft_count.load(Relaxed);
        let _ = writeln!(out, "rkl_ttft_seconds_bucket{{model=\"{}\",le=\"+Inf\"}} {count}", m.id);
        let _ =
            writeln!(out, "rkl_ttft_seconds_sum{{model=\"{}\"}} {}", m.id, x.ttft_sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "rkl_ttft_seconds_count{{model=\"{}\"}} {count}", m.id);
    }
    family(
        &mut out,
        "rkl_worker_restarts_total",
        "counter",
        "Worker processes started again after the first (isolation mode).",
    );
    each(&mut out, "rkl_worker_restarts_total", &|m| m.model.restarts().to_string());
    family(&mut out, "rkl_cache_hits_total", "counter", "Requests whose system prompt's cache was found.");
    each(&mut out, "rkl_cache_hits_total", &|m| m.metrics.cache_hits.load(Relaxed).to_string());
    family(&mut out, "rkl_cache_saves_total", "counter", "System prompt caches saved.");
    each(&mut out, "rkl_cache_saves_total", &|m| m.metrics.cache_saves.load(Relaxed).to_string());
    family(&mut out, "rkl_http_responses_total", "counter", "HTTP answers by status.");
    for (status, n) in server.http.by_status.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(out, "rkl_http_responses_total{{code=\"{status}\"}} {n}");
    }
    out
}
