//! A generation in flight in this process: the pull stream over the
//! runtime's callbacks.

use super::inner::ModelInner;
use crate::error::{Error, ErrorKind, Result};
use crate::outcome::{CacheUse, FinishReason, Stats, Step, StreamEvent};
use crate::runtime::{Batch, PerfStat, RunEvent, RunShared, STALL_POLL};
use crate::utf8::Reassembler;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an abort is repeated while the run has not returned: the runtime
/// clears its abort flag when a run starts and has been seen to stop late.
const ABORT_REPEAT: Duration = Duration::from_millis(50);

/// Who stopped the run, when rkl stopped it itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StopCause {
    None,
    MaxTokens,
    Callback,
}

/// Aborts one stream from any thread; see [`LocalStream::aborter`].
#[derive(Clone)]
pub(crate) struct LocalAborter {
    model: Arc<ModelInner>,
    shared: Arc<RunShared>,
}

impl LocalAborter {
    /// Asks the stream's run to stop; harmless once it has finished.
    pub fn abort(&self) {
        self.model.raw.abort_run(&self.shared);
    }
}

/// A generation read by pulling, with [`LocalStream::next_into`] or
/// [`LocalStream::next_event`]. Dropping an unfinished stream aborts its run.
pub(crate) struct LocalStream {
    model: Arc<ModelInner>,
    shared: Arc<RunShared>,
    /// The text of the token being handled (reused).
    token_text: Vec<u8>,
    /// Events taken from the run's queue, not read yet.
    batch: Batch,
    reassembler: Reassembler,
    token_limit: u32,
    stop: StopCause,
    started_at: Instant,
    perf: Option<PerfStat>,
    runtime_error: bool,
    stats: Stats,
    outcome: Option<Result<Stats>>,
}

impl LocalStream {
    pub(crate) fn new(model: Arc<ModelInner>, shared: Arc<RunShared>, token_limit: u32) -> LocalStream {
        LocalStream {
            model,
            shared,
            token_text: Vec::new(),
            batch: Batch::default(),
            reassembler: Reassembler::new(),
            token_limit,
            stop: StopCause::None,
            started_at: Instant::now(),
            perf: None,
            runtime_error: false,
            stats: Stats::default(),
            outcome: None,
        }
    }

    /// Records what automatic prompt caching did for this request, and that
    /// the request began at `started_at`, before that work.
    pub(crate) fn set_auto_cache(&mut self, cache: CacheUse, started_at: Instant) {
        self.stats.cache = cache;
        self.started_at = started_at;
    }

    /// Waits up to `timeout` (`None`: without limit) for the next text or the end.
    /// An error is returned once; afterwards the stream reports `Finished`
    /// with `FinishReason::Error`.
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<StreamEvent> {
        let mut text = String::new();
        Ok(match self.next_into(timeout, &mut text)? {
            Step::Text => StreamEvent::Text(text),
            Step::Timeout => StreamEvent::Timeout,
            Step::Finished(stats) => StreamEvent::Finished(stats),
        })
    }

    /// As [`LocalStream::next_event`], but the text is appended to `text`,
    /// so that a reused buffer needs no allocation.
    pub fn next_into(&mut self, timeout: Option<Duration>, text: &mut String) -> Result<Step> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            match self.outcome.take() {
                Some(Ok(stats)) => {
                    self.outcome = Some(Ok(stats));
                    return Ok(Step::Finished(stats));
                }
                Some(Err(e)) => {
                    self.outcome = Some(Ok(self.stats));
                    return Err(e);
                }
                None => {}
            }
            let event = match self.receive(deadline) {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(Step::Timeout),
                Err(stuck) => {
                    self.give_up(stuck);
                    continue;
                }
            };
            if self.handle(event, text) {
                return Ok(Step::Text);
            }
        }
    }

    /// Asks the run to stop; the stream then finishes with `Aborted`.
    pub fn abort(&self) {
        self.model.raw.abort_run(&self.shared);
    }

    /// A handle that aborts this stream from any thread, also while another
    /// thread waits in [`LocalStream::next_event`].
    pub fn aborter(&self) -> LocalAborter {
        LocalAborter { model: self.model.clone(), shared: self.shared.clone() }
    }

    /// The statistics, once the stream has finished.
    pub fn stats(&self) -> Option<Stats> {
        self.outcome.as_ref().map(|_| self.stats)
    }

    /// Whether the stream has finished.
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// The tokens counted so far (`Stats::tokens` of the text handed out).
    pub(crate) fn tokens(&self) -> u32 {
        self.stats.tokens
    }

    /// Stops the run because the chunk callback asked to.
    pub(crate) fn stop_by_callback(&mut self) {
        if self.stop == StopCause::None {
            self.stop = StopCause::Callback;
        }
        self.abort();
    }

    /// Receives one event; `None` when the deadline passed; an error when
    /// the runtime got stuck (a call made no progress within its limit).
    fn receive(&mut self, deadline: Option<Instant>) -> Result<Option<RunEvent>> {
        loop {
            let now = Instant::now();
            // Wake up now and then to look whether the runtime got stuck.
            let mut wait = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(now)).min(STALL_POLL);
            let aborting = self.shared.abort_requested();
            if aborting {
                wait = wait.min(ABORT_REPEAT);
            }
            if let Some(event) = self.shared.next_event(wait, &mut self.batch, &mut self.token_text) {
                return Ok(Some(event));
            }
            if let Some(stuck) = self.model.raw.runtime().stuck() {
                return Err(stuck);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            if aborting {
                self.abort();
            }
        }
    }

    /// Ends the stream with `error` without waiting for the runtime, which
    /// is stuck: its run stays registered as aborted.
    fn give_up(&mut self, error: Error) {
        self.abort();
        self.shared.reader_gone();
        self.model.end_run(&self.shared);
        self.stats.total_ms = ms(self.started_at.elapsed());
        self.stats.finish = FinishReason::Error;
        self.outcome = Some(Err(error));
    }

    /// Applies one event; true when it appended text to `out`.
    fn handle(&mut self, event: RunEvent, out: &mut String) -> bool {
        match event {
            RunEvent::Started => {
                self.stats.queue_ms = ms(self.started_at.elapsed());
                false
            }
            RunEvent::Token { waiting, text_len } => {
                let text = std::mem::take(&mut self.token_text);
                let delivered = self.take_token(waiting, text_len.map(|_| text.as_slice()), out);
                self.token_text = text;
                delivered
            }
            RunEvent::Finish(perf) => {
                self.perf = Some(perf);
                false
            }
            RunEvent::Error => {
                self.runtime_error = true;
                false
            }
            RunEvent::Returned(code) => {
                self.finish(Some(code));
                false
            }
            RunEvent::Skipped => {
                self.finish(None);
                false
            }
        }
    }

    /// Counts one token and appends the text it completes to `out`; true
    /// when there is text to hand out.
    fn take_token(&mut self, waiting: bool, text: Option<&[u8]>, out: &mut String) -> bool {
        // After an abort (by anyone) or a stop, text already queued from a
        // runtime that ran ahead is dropped, not delivered.
        if self.shared.abort_requested() || (self.stop != StopCause::None && self.stop != StopCause::MaxTokens) {
            return false;
        }
        self.stats.tokens += 1;
        let before = out.len();
        if waiting {
            self.reassembler.waiting(text);
        } else {
            self.reassembler.normal(text, out);
        }
        if self.token_limit != 0 && self.stats.tokens >= self.token_limit && self.stop == StopCause::None {
            self.stop = StopCause::MaxTokens;
            if self.model.needs_limit_abort() {
                self.abort();
            }
        }
        if out.len() == before {
            return false;
        }
        if self.stats.ttft_ms == 0.0 {
            self.stats.ttft_ms = ms(self.started_at.elapsed()).max(f64::MIN_POSITIVE);
        }
        true
    }

    fn finish(&mut self, code: Option<i32>) {
        let dropped = self.reassembler.finish();
        if dropped > 0 {
            log::debug!("dropped {dropped} bytes of an incomplete character at the end of a generation");
        }
        self.model.end_run(&self.shared);
        if let Some(perf) = self.perf {
            self.stats.prefill_ms = perf.prefill_time_ms as f64;
            self.stats.prefill_tokens = perf.prefill_tokens.max(0) as u32;
            self.stats.decode_ms = perf.generate_time_ms as f64;
            self.stats.decode_tokens = perf.generate_tokens.max(0) as u32;
            self.stats.memory_mb = perf.memory_usage_mb as f64;
        }
        self.stats.total_ms = ms(self.started_at.elapsed());
        let aborted = self.shared.abort_requested();
        if let Some(asked) = self.shared.aborted_at() {
            let late = asked.elapsed();
            // The abort that enforces a token limit on 1.2 is rkl's own, not
            // an abort of the generation.
            if self.stop != StopCause::MaxTokens {
                self.stats.abort_ms = ms(late);
            }
            let grace = self.model.abort_grace();
            if late > grace {
                log::warn!(
                    "the runtime stopped {} ms after the abort, beyond the {} ms grace",
                    late.as_millis(),
                    grace.as_millis()
                );
            }
        }
        // An ERROR callback always counts (a save can fail after rkl asked
        // the run to stop); a non-zero return after an abort may just be how
        // the runtime reports the abort.
        let failed = self.runtime_error || (!aborted && matches!(code, Some(c) if c != 0));
        self.stats.finish = if failed {
            FinishReason::Error
        } else if self.stop == StopCause::MaxTokens {
            FinishReason::MaxTokens
        } else if self.stop == StopCause::Callback {
            FinishReason::Stopped
        } else if aborted {
            FinishReason::Aborted
        } else if self.model.hit_init_limit(self.stats.tokens) {
            FinishReason::MaxTokens
        } else {
            FinishReason::End
        };
        self.outcome = Some(if self.stats.finish == FinishReason::Error {
            let how = match code {
                Some(i32::MIN) => "the runtime call ended inside rkl without returning".to_string(),
                Some(c) if self.runtime_error => format!("the runtime reported an error (rkllm_run returned {c})"),
                Some(c) => format!("rkllm_run returned {c}"),
                None => "the run did not start".to_string(),
            };
            Err(Error::new(ErrorKind::RuntimeFailed, format!("generation failed: {how}")))
        } else {
            Ok(self.stats)
        });
    }
}

impl Drop for LocalStream {
    fn drop(&mut self) {
        self.shared.reader_gone();
        if self.outcome.is_none() {
            self.abort();
            self.model.end_run(&self.shared);
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl LocalStream {
    /// The float rows the run reported (hidden states or logits), taken out.
    pub(crate) fn take_floats(&self) -> crate::runtime::Floats {
        self.shared.take_floats()
    }
}
