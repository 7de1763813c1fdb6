//! What a generation hands back, in both modes: its steps ([`StreamEvent`],
//! [`Step`]), how it ended ([`FinishReason`]) and its figures ([`Stats`]).

use serde::{Deserialize, Serialize};

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FinishReason {
    /// The model finished its reply.
    #[default]
    End,
    /// The token limit was reached.
    MaxTokens,
    /// Stopped by [`Model::abort`](crate::Model::abort), [`Stream::abort`](crate::Stream::abort) or closing the model.
    Aborted,
    /// Stopped because the chunk callback asked to stop.
    Stopped,
    /// The runtime reported an error.
    Error,
}

/// Figures for one generation: the runtime's own perf counters plus what rkl
/// measured on the caller's side. The runtime's counters come with its
/// FINISH report; a run that was aborted (including the abort rkl uses to
/// enforce a token limit on 1.2 runtimes) may have none, and they are 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Prefill time reported by the runtime (ms).
    pub prefill_ms: f64,
    /// Prompt tokens prefilled, as reported by the runtime.
    pub prefill_tokens: u32,
    /// Decode time reported by the runtime (ms).
    pub decode_ms: f64,
    /// Tokens generated, as reported by the runtime.
    pub decode_tokens: u32,
    /// Peak memory reported by the runtime (MiB).
    pub memory_mb: f64,
    /// Tokens rkl received and delivered.
    pub tokens: u32,
    /// Time from the request to the first text delivered (ms); 0 if none.
    pub ttft_ms: f64,
    /// Time the request waited for earlier calls on the runtime (ms).
    pub queue_ms: f64,
    /// Time from the request to its end (ms).
    pub total_ms: f64,
    /// Time from the first abort request to the end of the run (ms); 0 when
    /// it was not aborted. More than the model's `abort_grace` means the
    /// runtime stopped late (in-process, logged as a warning) or, in
    /// isolation mode, that its worker was killed to stop it.
    pub abort_ms: f64,
    /// Why it ended.
    pub finish: FinishReason,
    /// What automatic prompt caching did for this request.
    #[serde(default)]
    pub cache: CacheUse,
}

/// What automatic prompt caching ([`OpenConfig::auto_cache`](crate::OpenConfig::auto_cache))
/// did for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CacheUse {
    /// Nothing: no automatic cache, or the request marked no stable prefix.
    #[default]
    None,
    /// The prefix's cache was found (already loaded, or loaded from disk).
    Hit,
    /// No cache of the prefix existed: it was saved, then loaded.
    Saved,
}

/// One step of a [`Stream`](crate::Stream).
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// Complete UTF-8 text.
    Text(String),
    /// The timeout passed with no text.
    Timeout,
    /// The generation is over; later calls return this again.
    Finished(Stats),
}

/// What [`Stream::next_into`](crate::Stream::next_into) found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Text was appended to the caller's buffer.
    Text,
    /// The timeout passed with no text.
    Timeout,
    /// The generation is over.
    Finished(Stats),
}

/// A float array the runtime computed for a request: `tokens` rows of
/// `dim` values, row after row. From [`Model::hidden_states`](crate::Model::hidden_states)
/// (`dim` = the embedding size) and [`Model::logits`](crate::Model::logits)
/// (`dim` = the vocabulary size).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    /// `tokens * dim` values.
    #[serde(with = "crate::wire::numbers")]
    pub values: Vec<f32>,
    /// Rows: one per token.
    pub tokens: usize,
    /// Values per row.
    pub dim: usize,
}

impl Tensor {
    /// Row `token`, if there is one.
    pub fn row(&self, token: usize) -> Option<&[f32]> {
        (token < self.tokens).then(|| &self.values[token * self.dim..(token + 1) * self.dim])
    }
}

/// What a request asks the runtime for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// Generated text (the usual case).
    #[default]
    Text,
    /// The last hidden layer of the prompt's tokens.
    HiddenStates,
    /// The logits.
    Logits,
}
