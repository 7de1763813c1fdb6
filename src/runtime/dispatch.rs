//! The dispatcher: one thread per loaded runtime that makes every call into
//! it, one at a time, in the order the calls were submitted.
//!
//! The runtime's thread-safety is undocumented and several handles used to
//! corrupt each other, so nothing but this thread (and `rkllm_abort`, which is
//! meant to be called during a run) ever enters the runtime.

use crate::error::{Error, ErrorKind, Result};
use crossbeam_channel::{bounded, unbounded, Sender};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::{self, ThreadId};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A handle on a runtime's dispatcher thread.
pub struct Dispatcher {
    jobs: Sender<Job>,
    thread: ThreadId,
}

impl Dispatcher {
    /// Starts the thread. It lives as long as the process: runtimes are never
    /// unloaded, because a vendor library may keep threads of its own.
    pub fn start(name: String) -> Result<Dispatcher> {
        let (jobs, queue) = unbounded::<Job>();
        let handle = thread::Builder::new()
            .name(name)
            .spawn(move || {
                for job in queue {
                    // A panic inside a job is reported by the job itself (its
                    // reply channel closes); the dispatcher keeps serving.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            })
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start the runtime thread: {e}")))?;
        Ok(Dispatcher { jobs, thread: handle.thread().id() })
    }

    /// Queues `job` to run after everything submitted before it.
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) -> Result<()> {
        self.refuse_on_own_thread()?;
        self.jobs
            .send(Box::new(job))
            .map_err(|_| Error::new(ErrorKind::Internal, "the runtime thread has stopped"))
    }

    /// Runs `job` on the dispatcher and waits for its result.
    pub fn call<R: Send + 'static>(&self, job: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        let (reply, answer) = bounded(1);
        self.submit(move || {
            let _ = reply.send(job());
        })?;
        answer
            .recv()
            .map_err(|_| Error::new(ErrorKind::Internal, "a runtime call panicked inside rkl"))
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
            d.submit(move || seen.lock().unwrap().push(i)).unwrap();
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
}
