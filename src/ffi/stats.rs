//! `rkl_stats`: figures of one generation and why it ended.

use super::args::Versioned;
use crate::{CacheUse, FinishReason, Stats};

/// Why a generation ended.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rkl_finish_reason {
    /// The model finished its reply.
    RKL_FINISH_END = 0,
    /// The token limit (`max_new_tokens`) was reached.
    RKL_FINISH_MAX_TOKENS = 1,
    /// Stopped by rkl_abort(), rkl_stream_abort(), rkl_stream_close() or
    /// rkl_close().
    RKL_FINISH_ABORTED = 2,
    /// The token callback returned non-zero.
    RKL_FINISH_STOPPED = 3,
    /// The runtime reported an error.
    RKL_FINISH_ERROR = 4,
}

/// What automatic prompt caching did for a request (`rkl_stats.cache_use`).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rkl_cache_use {
    /// Nothing: no `cache_dir`, or the request marked no prefix.
    RKL_CACHE_USE_NONE = 0,
    /// The prefix's cache was found: already loaded, or loaded from disk.
    RKL_CACHE_USE_HIT = 1,
    /// There was none: it was saved (one prefill of the prefix), then loaded.
    RKL_CACHE_USE_SAVED = 2,
}

/// Figures for one generation: the runtime's own counters plus what rkl
/// measured on the caller's side. The runtime's counters (prefill_*,
/// decode_*, memory_mb) come with its end-of-run report; a run that was
/// aborted (including the abort rkl uses to enforce a token limit on 1.2
/// runtimes) may have none, and then they are 0.
///
/// An output struct: set `struct_size = sizeof(rkl_stats)` before passing it
/// (C99: `rkl_stats st = { .struct_size = sizeof st };`). rkl writes it only
/// on success, never past `struct_size`, and leaves `struct_size` as it was.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct rkl_stats {
    /// Set by the caller to `sizeof(rkl_stats)`.
    pub struct_size: usize,
    /// Why the generation ended.
    pub finish: rkl_finish_reason,
    /// Tokens rkl received from the runtime (including those that carried
    /// only part of a character).
    pub tokens: u32,
    /// Prompt tokens prefilled, as the runtime reported (0 if it did not).
    pub prefill_tokens: u32,
    /// Tokens generated, as the runtime reported (0 if it did not).
    pub decode_tokens: u32,
    /// Time from the request to the first text delivered, in ms (0: no text).
    pub ttft_ms: f64,
    /// Time the request waited behind earlier calls on the same runtime, in ms.
    pub queue_ms: f64,
    /// Time from the request to its end, in ms.
    pub total_ms: f64,
    /// Prefill time reported by the runtime, in ms.
    pub prefill_ms: f64,
    /// Decode time reported by the runtime, in ms.
    pub decode_ms: f64,
    /// Peak memory reported by the runtime, in MiB.
    pub memory_mb: f64,
    /// Version 2 of the struct starts here. Time from the first abort
    /// request to the end of the run, in ms (0 when not aborted). Beyond the
    /// model's `abort_grace_ms` it means the runtime stopped late
    /// (in-process) or its worker was killed to stop it (isolation mode).
    pub abort_ms: f64,
    /// Version 3 of the struct starts here. What automatic prompt caching
    /// did: an ::rkl_cache_use value. With a cache saved or loaded, `ttft_ms`
    /// and `total_ms` include that work.
    pub cache_use: rkl_cache_use,
}

// SAFETY: repr(C), starts with usize, every field is valid for any bit
// pattern except `finish`, which rkl only writes and never reads from C.
unsafe impl Versioned for rkl_stats {
    const NAME: &'static str = "rkl_stats";
    /// Version 1 ended with `memory_mb`.
    const V1_SIZE: usize = std::mem::offset_of!(rkl_stats, abort_ms);
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(
    std::mem::offset_of!(rkl_stats, abort_ms) == 72
        && std::mem::offset_of!(rkl_stats, cache_use) == 80
        && std::mem::size_of::<rkl_stats>() == 88
);

impl From<&Stats> for rkl_stats {
    fn from(s: &Stats) -> rkl_stats {
        rkl_stats {
            struct_size: std::mem::size_of::<rkl_stats>(),
            finish: match s.finish {
                FinishReason::End => rkl_finish_reason::RKL_FINISH_END,
                FinishReason::MaxTokens => rkl_finish_reason::RKL_FINISH_MAX_TOKENS,
                FinishReason::Aborted => rkl_finish_reason::RKL_FINISH_ABORTED,
                FinishReason::Stopped => rkl_finish_reason::RKL_FINISH_STOPPED,
                FinishReason::Error => rkl_finish_reason::RKL_FINISH_ERROR,
            },
            tokens: s.tokens,
            prefill_tokens: s.prefill_tokens,
            decode_tokens: s.decode_tokens,
            ttft_ms: s.ttft_ms,
            queue_ms: s.queue_ms,
            total_ms: s.total_ms,
            prefill_ms: s.prefill_ms,
            decode_ms: s.decode_ms,
            memory_mb: s.memory_mb,
            abort_ms: s.abort_ms,
            cache_use: match s.cache {
                CacheUse::None => rkl_cache_use::RKL_CACHE_USE_NONE,
                CacheUse::Hit => rkl_cache_use::RKL_CACHE_USE_HIT,
                CacheUse::Saved => rkl_cache_use::RKL_CACHE_USE_SAVED,
            },
        }
    }
}
