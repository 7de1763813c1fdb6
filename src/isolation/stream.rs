//! `IsolatedStream`: a generation running in the worker, read from its
//! replies. It behaves as the in-process stream: text, then one end; an
//! error is returned once, then the end with `FinishReason::Error`.

use super::client::{Event, RequestFlags, Submitted, Worker};
use super::protocol::Reply;
use crate::error::{Error, ErrorKind, Result};
use crate::outcome::{FinishReason, Stats, StreamEvent};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Aborts one isolated stream from any thread.
#[derive(Clone)]
pub(crate) struct IsolatedAborter {
    worker: Arc<Worker>,
    id: u64,
    flags: Arc<RequestFlags>,
}

impl IsolatedAborter {
    pub fn abort(&self) {
        self.worker.abort_run(self.id, &self.flags);
    }
}

pub(crate) struct IsolatedStream {
    /// Keeps the model open while the stream lives, as in-process (held by
    /// any type, so that the stream needs nothing of the model's).
    _model: Box<dyn Send + Sync>,
    worker: Arc<Worker>,
    id: u64,
    events: Receiver<Event>,
    /// Whether (and when) the caller aborted the run.
    flags: Arc<RequestFlags>,
    /// An event received before the stream existed.
    first: Option<Event>,
    started_at: Instant,
    /// The chunk callback asked to stop: later text is dropped, and an
    /// abort counts as `Stopped`.
    stopped: bool,
    stats: Stats,
    outcome: Option<Result<Stats>>,
}

impl IsolatedStream {
    pub fn new(
        model: impl Send + Sync + 'static,
        worker: Arc<Worker>,
        submitted: Submitted,
        first: Option<Event>,
        started_at: Instant,
    ) -> IsolatedStream {
        let Submitted { id, events, flags } = submitted;
        IsolatedStream {
            _model: Box::new(model),
            worker,
            id,
            events,
            flags,
            first,
            started_at,
            stopped: false,
            stats: Stats::default(),
            outcome: None,
        }
    }

    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<StreamEvent> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            match self.outcome.take() {
                Some(Ok(stats)) => {
                    self.outcome = Some(Ok(stats));
                    return Ok(StreamEvent::Finished(stats));
                }
                Some(Err(e)) => {
                    self.outcome = Some(Ok(self.stats));
                    return Err(e);
                }
                None => {}
            }
            let received = match (self.first.take(), deadline) {
                (Some(event), _) => Ok(event),
                (None, Some(d)) => self.events.recv_deadline(d),
                (None, None) => self.events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let event = match received {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => return Ok(StreamEvent::Timeout),
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(Error::new(ErrorKind::Internal, "the worker connection dropped during a generation"));
                    continue;
                }
            };
            match event {
                Event::Reply(Reply::Text { text, tokens, .. }) => {
                    // As in-process: once an abort (by anyone) or a stop
                    // was asked for, text the worker sent before it heard
                    // is dropped, not delivered.
                    if self.stopped || self.flags.is_aborted() {
                        self.flags.drop_text();
                        continue;
                    }
                    // The tokens received and delivered so far, also for a
                    // run that ends without the worker's figures.
                    self.stats.tokens = tokens;
                    if self.stats.ttft_ms == 0.0 {
                        self.stats.ttft_ms = ms(self.started_at.elapsed()).max(f64::MIN_POSITIVE);
                    }
                    return Ok(StreamEvent::Text(text));
                }
                Event::Reply(Reply::Finished { stats, .. }) => self.finish(stats),
                Event::Reply(Reply::Failed { error, .. }) => self.fail(error),
                Event::Gone(death, aborted_at)
                    if (aborted_at.is_some() && death.ends_aborted_runs()) || death.aborts_every_run() =>
                {
                    // Killed after an abort it did not obey in time, or
                    // closed/restarted (which abort every run, also one that
                    // started as that began): the run is over as asked,
                    // with what was delivered of it.
                    self.flags.abort(Instant::now());
                    let stats = Stats { finish: FinishReason::Aborted, tokens: self.stats.tokens, ..Stats::default() };
                    self.finish(stats);
                }
                Event::Gone(death, _) => self.fail(death.error("a generation")),
                Event::Reply(other) => log::debug!("ignored {other:?} in a stream"),
            }
        }
    }

    /// Ends with the worker's figures and this side's timing.
    fn finish(&mut self, worker_stats: Stats) {
        let (ttft_ms, delivered_tokens) = (self.stats.ttft_ms, self.stats.tokens);
        self.stats = worker_stats;
        self.stats.ttft_ms = ttft_ms;
        self.stats.total_ms = ms(self.started_at.elapsed());
        if self.flags.dropped_text() {
            // The worker counted tokens whose text came after the abort and
            // was dropped here; in-process they are not counted.
            self.stats.tokens = delivered_tokens;
        }
        // As in-process, a stop asked by the callback is what ended the
        // run, whatever the worker saw before the abort reached it; and so
        // is an abort asked for before the end arrived: the worker may have
        // finished first, but text after the abort was not delivered. (A
        // token limit still counts when its last text was delivered.)
        if let Some(at) = self.flags.aborted_at() {
            self.stats.abort_ms = ms(at.elapsed());
            if self.stopped && self.stats.finish != FinishReason::Error {
                self.stats.finish = FinishReason::Stopped;
            } else if self.stats.finish == FinishReason::End
                || (self.stats.finish == FinishReason::MaxTokens && self.flags.dropped_text())
            {
                self.stats.finish = FinishReason::Aborted;
            }
        }
        self.outcome = Some(Ok(self.stats));
    }

    fn fail(&mut self, error: Error) {
        self.stats.total_ms = ms(self.started_at.elapsed());
        self.stats.finish = FinishReason::Error;
        self.outcome = Some(Err(error));
    }

    pub fn abort(&self) {
        self.worker.abort_run(self.id, &self.flags);
    }

    pub fn aborter(&self) -> IsolatedAborter {
        IsolatedAborter { worker: self.worker.clone(), id: self.id, flags: self.flags.clone() }
    }

    pub fn stats(&self) -> Option<Stats> {
        self.outcome.as_ref().map(|_| self.stats)
    }

    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    pub fn stop_by_callback(&mut self) {
        self.stopped = true;
        self.abort();
    }
}

impl Drop for IsolatedStream {
    fn drop(&mut self) {
        if self.outcome.is_none() {
            self.abort();
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
