//! The dispatcher: one thread per loaded runtime that makes every call into
//! it, one at a time, in the order the calls were submitted.
//!
//! The runtime's thread-safety is undocumented and several handles used to
//! corrupt each other, so nothing but this thread (and `rkllm_abort`, which is
//! meant to be called during a run) ever enters the runtime.
//!
//! A [`Watch`] records whether the thread is inside a job and when that job
//! last made progress (started, or had a runtime callback). A job submitted
//! with a limit that makes no progress for longer than the limit marks the
//! runtime *stuck*: the thread cannot be taken back from a runtime that never
//! returns, so every later call on the runtime is refused at once instead of
//! queueing behind it forever.

use crate::error::{Error, ErrorKind, Result};
use crossbeam_channel::{bounded, unbounded, RecvTimeoutError, Sender};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

struct Job {
    /// How long the job may go without progress (`None`: without limit).
    limit: Option<Duration>,
    run: Box<dyn FnOnce() + Send + 'static>,
}

/// How often a waiter looks at the watch while it waits.
pub const STALL_POLL: Duration = Duration::from_millis(50);

/// Progress of the job the dispatcher is running, and whether the runtime
/// got stuck.
#[derive(Default)]
pub struct Watch {
    state: Mutex<WatchState>,
}

#[derive(Default)]
struct WatchState {
    /// The running job: its last progress and its limit.
    job: Option<(Instant, Option<Duration>)>,
    /// Why the runtime is stuck, once it is.
    stuck: Option<String>,
}

impl Watch {
    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self, limit: Option<Duration>) {
        self.lock().job = Some((Instant::now(), limit));
    }

    fn end(&self) {
        self.lock().job = None;
    }

    /// Records progress of the running job (a runtime callback).
    pub fn touch(&self) {
        if let Some((last, _)) = self.lock().job.as_mut() {
            *last = Instant::now();
        }
    }

    /// The error to report when the runtime is stuck: it was found stuck
    /// before, or the running job has made no progress for longer than its
    /// limit (which marks it stuck now).
    pub fn stuck(&self) -> Option<Error> {
        let mut state = self.lock();
        if state.stuck.is_none() {
            if let Some((last, Some(limit))) = state.job {
                if last.elapsed() > limit {
                    let why = format!(
                        "the runtime made no progress for {} ms (call_timeout) and never returned; \
                         its thread stays stuck, so every model on this runtime is unusable until the \
                         process restarts (isolation mode recovers from this by killing its worker)",
                        limit.as_millis()
                    );
                    log::error!("{why}");
                    state.stuck = Some(why);
                }
            }
        }
        state.stuck.as_ref().map(|why| Error::new(ErrorKind::Timeout, why.clone()))
    }

    /// When the running job last made progress; `None` while idle.
    pub fn last_progress(&self) -> Option<Instant> {
        self.lock().job.map(|(last, _)| last)
    }

    /// Whether the runtime was found stuck (without checking the running job).
    pub fn is_stuck(&self) -> bool {
        self.lock().stuck.is_some()
    }
}

/// A handle on a runtime's dispatcher thread.
pub struct Dispatcher {
    jobs: Sender<Job>,
    thread: ThreadId,
    watch: Arc<Watch>,
}

impl Dispatcher {
    /// Starts the thread. It lives as long as the process: runtimes are never
    /// unloaded, because a vendor library may keep threads of its own.
    pub fn start(name: String) -> Result<Dispatcher> {
        let (jobs, queue) = unbounded::<Job>();
        let watch = Arc::new(Watch::default());
        let watched = watch.clone();
        let handle = thread::Builder::new()
            .name(name)
            .spawn(move || {
                for job in queue {
                    watched.begin(job.limit);
                    // A panic inside a job is reported by the job itself (its
                    // reply channel closes); the dispatcher keeps serving.
                    let _ = catch_unwind(AssertUnwindSafe(job.run));
                    watched.end();
                }
            })
            .map_err(|e| Error::from_os(ErrorKind::Internal, format!("cannot start the runtime thread: {e}"), &e))?;
        Ok(Dispatcher { jobs, thread: handle.thread().id(), watch })
    }

    /// The progress watch of this dispatcher.
    pub fn watch(&self) -> &Arc<Watch> {
        &self.watch
    }

    /// Queues `job` to run after everything submitted before it; the job may
    /// go `limit` without progress before the runtime counts as stuck.
    /// Refused once the runtime is stuck.
    pub fn submit_limited(&self, limit: Option<Duration>, job: impl FnOnce() + Send + 'static) -> Result<()> {
        self.refuse_on_own_thread()?;
        if let Some(stuck) = self.watch.stuck() {
            return Err(stuck);
        }
        self.jobs
            .send(Job { limit, run: Box::new(job) })
            .map_err(|_| Error::new(ErrorKind::Internal, "the runtime thread has stopped"))
    }

    /// Runs `job` on the dispatcher and waits for its result.
    pub fn call<R: Send + 'static>(&self, job: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        self.call_limited(None, job)
    }

    /// Like [`Dispatcher::call`] with a progress limit (see
    /// [`Dispatcher::submit_limited`]); gives up with
    /// [`ErrorKind::Timeout`] when the runtime gets stuck while this waits.
    pub fn call_limited<R: Send + 'static>(
        &self,
        limit: Option<Duration>,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R> {
        let (reply, answer) = bounded(1);
        self.submit_limited(limit, move || {
            let _ = reply.send(job());
        })?;
        loop {
            match answer.recv_timeout(STALL_POLL) {
                Ok(value) => return Ok(value),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(stuck) = self.watch.stuck() {
                        return Err(stuck);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::new(ErrorKind::Internal, "a runtime call panicked inside rkl"))
                }
            }
        }
    }

    /// Waiting on the dispatcher from the dispatcher would never return.
    fn refuse_on_own_thread(&self) -> Result<()> {
        if thread::current().id() == self.thread {
            return Err(Error::new(
                ErrorKind::Reentrant,
                "called from the runtime's own thread (inside a runtime callback)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn runs_jobs_in_submission_order() {
        let d = Dispatcher::start("test-dispatch".into()).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..100 {
            let seen = seen.clone();
            d.submit_limited(None, move || seen.lock().unwrap().push(i)).unwrap();
        }
        assert_eq!(d.call(|| 7).unwrap(), 7);
        assert_eq!(*seen.lock().unwrap(), (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_job_is_an_error_and_the_thread_survives() {
        let d = Dispatcher::start("test-dispatch".into()).unwrap();
        let err = d.call(|| -> i32 { panic!("boom") }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(d.call(|| 1 + 1).unwrap(), 2);
    }

    #[test]
    fn a_job_without_progress_past_its_limit_makes_the_runtime_stuck() {
        let d = Dispatcher::start("test-dispatch".into()).unwrap();
        // Progress within the limit is fine.
        let watch = d.watch().clone();
        let ok = d.call_limited(Some(Duration::from_millis(100)), move || {
            for _ in 0..4 {
                thread::sleep(Duration::from_millis(40));
                watch.touch();
            }
            5
        });
        assert_eq!(ok.unwrap(), 5);
        let (release, wait) = bounded::<()>(1);
        let err = d
            .call_limited(Some(Duration::from_millis(50)), move || {
                let _ = wait.recv();
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(d.watch().is_stuck());
        assert_eq!(d.call(|| 1).unwrap_err().kind(), ErrorKind::Timeout, "refused at once");
        drop(release);
    }
}
