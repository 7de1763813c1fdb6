//! [`Stream`]: a generation in flight, read by pulling. The same type in both
//! modes: in-process it reads the runtime's callbacks (`crate::local`), in
//! isolation mode the worker's messages (`crate::isolation`).

use crate::error::Result;
use crate::isolation::{IsolatedAborter, IsolatedStream};
use crate::local::{LocalAborter, LocalStream};
use crate::outcome::{Stats, Step, StreamEvent};
use std::time::Duration;

/// A generation read by pulling: [`Stream::next_event`] or the iterator.
/// Dropping an unfinished stream aborts its run.
///
/// ```no_run
/// use rkl::{GenerateRequest, Model, OpenConfig, StreamEvent};
/// use std::time::Duration;
///
/// let model = Model::open(&OpenConfig::new("qwen3-0.6b.rkllm"))?;
/// let mut stream = model.stream(&GenerateRequest::new("Hello!"))?;
/// loop {
///     match stream.next_event(Some(Duration::from_millis(100)))? {
///         StreamEvent::Text(text) => print!("{text}"),
///         StreamEvent::Timeout => {} // nothing yet: do other work, look again
///         StreamEvent::Finished(stats) => break println!("\n{} tokens", stats.tokens),
///     }
/// }
/// # Ok::<(), rkl::Error>(())
/// ```
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
