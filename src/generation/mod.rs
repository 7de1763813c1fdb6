//! A generation in flight: the pull stream, its statistics and how it ended.
//!
//! [`Stream`] is the same in both modes: in-process it reads the runtime's
//! callbacks (`local`), in isolation mode the worker's messages
//! (`crate::isolation`).

mod local;

pub(crate) use local::{LocalAborter, LocalStream};

use crate::error::Result;
use crate::isolation::{IsolatedAborter, IsolatedStream};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FinishReason {
    /// The model finished its reply.
    #[default]
    End,
    /// The token limit was reached.
    MaxTokens,
    /// Stopped by [`Model::abort`](crate::Model::abort), [`Stream::abort`] or closing the model.
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
}

/// One step of a [`Stream`].
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// Complete UTF-8 text.
    Text(String),
    /// The timeout passed with no text.
    Timeout,
    /// The generation is over; later calls return this again.
    Finished(Stats),
}

/// What [`Stream::next_into`] found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Text was appended to the caller's buffer.
    Text,
    /// The timeout passed with no text.
    Timeout,
    /// The generation is over.
    Finished(Stats),
}

/// A generation read by pulling: [`Stream::next_event`] or the iterator.
/// Dropping an unfinished stream aborts its run.
pub struct Stream {
    backend: StreamBackend,
}

enum StreamBackend {
    Local(LocalStream),
    Isolated(IsolatedStream),
}

/// Aborts one stream from any thread; see [`Stream::aborter`].
#[derive(Clone)]
pub struct StreamAborter {
    backend: AborterBackend,
}

#[derive(Clone)]
enum AborterBackend {
    Local(LocalAborter),
    Isolated(IsolatedAborter),
}

impl StreamAborter {
    /// Asks the stream's run to stop; harmless once it has finished.
    pub fn abort(&self) {
        match &self.backend {
            AborterBackend::Local(a) => a.abort(),
            AborterBackend::Isolated(a) => a.abort(),
        }
    }
}

impl From<LocalStream> for Stream {
    fn from(s: LocalStream) -> Stream {
        Stream { backend: StreamBackend::Local(s) }
    }
}

impl From<IsolatedStream> for Stream {
    fn from(s: IsolatedStream) -> Stream {
        Stream { backend: StreamBackend::Isolated(s) }
    }
}

impl Stream {
    /// Waits up to `timeout` (`None`: without limit) for the next text or the end.
    /// An error is returned once; afterwards the stream reports `Finished`
    /// with `FinishReason::Error`.
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<StreamEvent> {
        match &mut self.backend {
            StreamBackend::Local(s) => s.next_event(timeout),
            StreamBackend::Isolated(s) => s.next_event(timeout),
        }
    }

    /// As [`Stream::next_event`], but the text is appended to `text` (clear
    /// it first to get only the new text). In-process, reading into a reused
    /// buffer this way allocates nothing per token; the iterator and
    /// `next_event` allocate the `String` they hand out.
    pub fn next_into(&mut self, timeout: Option<Duration>, text: &mut String) -> Result<Step> {
        match &mut self.backend {
            StreamBackend::Local(s) => s.next_into(timeout, text),
            StreamBackend::Isolated(s) => Ok(match s.next_event(timeout)? {
                StreamEvent::Text(chunk) => {
                    text.push_str(&chunk);
                    Step::Text
                }
                StreamEvent::Timeout => Step::Timeout,
                StreamEvent::Finished(stats) => Step::Finished(stats),
            }),
        }
    }

    /// Asks the run to stop; the stream then finishes with `Aborted`.
    pub fn abort(&self) {
        match &self.backend {
            StreamBackend::Local(s) => s.abort(),
            StreamBackend::Isolated(s) => s.abort(),
        }
    }

    /// A handle that aborts this stream from any thread, also while another
    /// thread waits in [`Stream::next_event`].
    pub fn aborter(&self) -> StreamAborter {
        let backend = match &self.backend {
            StreamBackend::Local(s) => AborterBackend::Local(s.aborter()),
            StreamBackend::Isolated(s) => AborterBackend::Isolated(s.aborter()),
        };
        StreamAborter { backend }
    }

    /// The statistics, once the stream has finished.
    pub fn stats(&self) -> Option<Stats> {
        match &self.backend {
            StreamBackend::Local(s) => s.stats(),
            StreamBackend::Isolated(s) => s.stats(),
        }
    }

    /// Whether the stream has finished.
    pub fn is_finished(&self) -> bool {
        match &self.backend {
            StreamBackend::Local(s) => s.is_finished(),
            StreamBackend::Isolated(s) => s.is_finished(),
        }
    }

    /// Stops the run because the chunk callback asked to.
    pub(crate) fn stop_by_callback(&mut self) {
        match &mut self.backend {
            StreamBackend::Local(s) => s.stop_by_callback(),
            StreamBackend::Isolated(s) => s.stop_by_callback(),
        }
    }
}

impl Iterator for Stream {
    type Item = Result<String>;

    /// Blocks for the next text; `None` at the end.
    fn next(&mut self) -> Option<Result<String>> {
        match self.next_event(None) {
            Ok(StreamEvent::Text(text)) => Some(Ok(text)),
            Ok(StreamEvent::Finished(_)) | Ok(StreamEvent::Timeout) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
