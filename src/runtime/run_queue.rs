//! A run's events ([`RunEvent`]) and the queue that carries them from the
//! runtime's callback to the thread reading the stream.
//!
//! Why not a channel: a list channel allocates a block every few dozen
//! messages, and each token's text would need a buffer of its own (the
//! runtime may run far ahead of the reader). Here events and text bytes go
//! into two queues that keep their capacity, so a generation in steady state
//! allocates nothing per token.
//!
//! The reader takes everything queued at once into its own [`Batch`] and
//! reads that without the lock, so that the runtime's thread and the
//! reader's rarely meet on it.
//!
//! The queue also counts the events the reader is done with, so that a
//! callback can wait until its token was handled (isolation mode's worker,
//! see `RunShared::hand_over_each_token`).

use super::layout_common::PerfStat;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// What a run reports back to the thread that consumes it, in order.
#[derive(Debug)]
pub enum RunEvent {
    /// The dispatcher started the run (its queue wait ended).
    Started,
    /// A NORMAL or WAITING callback; `text_len` is `None` when the runtime
    /// gave NULL. The text comes with the event from `RunShared::next_event`.
    Token { waiting: bool, text_len: Option<usize> },
    /// The FINISH callback with the runtime's own figures.
    Finish(PerfStat),
    /// An ERROR callback.
    Error,
    /// `rkllm_run` returned this code. Always the last event of a run.
    Returned(i32),
    /// The run was aborted before it started; nothing reached the runtime.
    Skipped,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<RunEvent>,
    /// The texts of the queued `Token` events, back to back, oldest first.
    text: VecDeque<u8>,
    /// Events pushed so far.
    pushed: u64,
    /// Events taken by the reader.
    taken: u64,
    /// Events the reader is done with: it came back for more after them.
    handled: u64,
    /// The reader is gone; nobody waits for `handled` any more.
    closed: bool,
    /// Threads waiting in `pop` and in `wait_handled`: a wake-up costs a
    /// system call, so it is made only when someone waits.
    readers_waiting: u32,
    callbacks_waiting: u32,
}

/// Events the reader took out of the queue, read without the lock. Its
/// buffers and the queue's trade places, so neither allocates once grown.
#[derive(Default)]
pub struct Batch {
    events: VecDeque<RunEvent>,
    text: VecDeque<u8>,
}

impl Batch {
    fn next(&mut self, text: &mut Vec<u8>) -> Option<RunEvent> {
        let event = self.events.pop_front()?;
        if let RunEvent::Token { text_len: Some(len), .. } = event {
            text.clear();
            text.extend(self.text.drain(..len));
        }
        Some(event)
    }
}

/// Events of one run, first in first out.
#[derive(Default)]
pub struct RunQueue {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Signalled when the reader is done with events, or gone.
    handled: Condvar,
}

impl RunQueue {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Each operation leaves the queue whole before anything can panic.
        self.queue.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Adds an event and wakes the reader. A `Token` event's text is given
    /// here as `text` (its `text_len` is set from it). Returns the event's
    /// number, for [`RunQueue::wait_handled`].
    pub fn push(&self, mut event: RunEvent, text: Option<&[u8]>) -> u64 {
        let mut queue = self.lock();
        if let RunEvent::Token { text_len, .. } = &mut event {
            *text_len = text.map(|bytes| {
                queue.text.extend(bytes);
                bytes.len()
            });
        }
        queue.events.push_back(event);
        queue.pushed += 1;
        let number = queue.pushed;
        let wake = queue.readers_waiting > 0;
        drop(queue);
        if wake {
            self.ready.notify_one();
        }
        number
    }

    /// Waits until the reader is done with event `number` (it took it and
    /// came back for the next one), or is gone.
    pub fn wait_handled(&self, number: u64) {
        let mut queue = self.lock();
        queue.callbacks_waiting += 1;
        let mut queue = self
            .handled
            .wait_while(queue, |q| q.handled < number && !q.closed)
            .unwrap_or_else(|poison| poison.into_inner());
        queue.callbacks_waiting -= 1;
    }

    /// The reader is gone: nothing waits for it any more.
    pub fn close(&self) {
        self.lock().closed = true;
        self.handled.notify_all();
    }

    /// The oldest event, waiting up to `wait` for one: from `batch`, else
    /// everything queued moves into `batch` first. A `Token` event's text
    /// replaces the contents of `text`. Coming back to the queue says that
    /// the reader is done with the events it took before.
    pub fn pop(&self, wait: Duration, batch: &mut Batch, text: &mut Vec<u8>) -> Option<RunEvent> {
        if let Some(event) = batch.next(text) {
            return Some(event);
        }
        let mut queue = self.lock();
        if queue.handled != queue.taken {
            queue.handled = queue.taken;
            if queue.callbacks_waiting > 0 {
                self.handled.notify_all();
            }
        }
        if queue.events.is_empty() {
            queue.readers_waiting += 1;
            queue = self
                .ready
                .wait_timeout_while(queue, wait, |q| q.events.is_empty())
                .unwrap_or_else(|poison| poison.into_inner())
                .0;
            queue.readers_waiting -= 1;
        }
        queue.taken += queue.events.len() as u64;
        std::mem::swap(&mut queue.events, &mut batch.events);
        std::mem::swap(&mut queue.text, &mut batch.text);
        drop(queue);
        batch.next(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    fn token(text: Option<&[u8]>) -> (RunEvent, Option<&[u8]>) {
        (RunEvent::Token { waiting: false, text_len: None }, text)
    }

    #[test]
    fn events_and_their_texts_come_out_in_order_across_threads() {
        let queue = Arc::new(RunQueue::default());
        let writer = {
            let queue = queue.clone();
            thread::spawn(move || {
                for n in 0..1000u32 {
                    let text = n.to_string();
                    let (event, text) = token((n % 7 != 0).then_some(text.as_bytes()));
                    queue.push(event, text);
                }
                queue.push(RunEvent::Returned(0), None);
            })
        };
        let (mut batch, mut text) = (Batch::default(), Vec::new());
        for n in 0..1000u32 {
            match queue.pop(Duration::from_secs(10), &mut batch, &mut text) {
                Some(RunEvent::Token { text_len: None, .. }) => assert_eq!(n % 7, 0, "token {n} lost its text"),
                Some(RunEvent::Token { text_len: Some(len), .. }) => {
                    assert_eq!(text, n.to_string().as_bytes());
                    assert_eq!(len, text.len());
                }
                other => panic!("expected token {n}, got {other:?}"),
            }
        }
        assert!(matches!(queue.pop(Duration::from_secs(10), &mut batch, &mut text), Some(RunEvent::Returned(0))));
        writer.join().unwrap();
        assert!(queue.pop(Duration::ZERO, &mut batch, &mut text).is_none());
        assert!(queue.lock().text.is_empty() && batch.text.is_empty(), "text bytes left behind");
    }

    #[test]
    fn a_writer_can_wait_until_the_reader_is_done_with_its_event() {
        let queue = Arc::new(RunQueue::default());
        let (done, seen) = std::sync::mpsc::channel();
        let writer = {
            let queue = queue.clone();
            thread::spawn(move || {
                for n in 0..100u32 {
                    let number =
                        queue.push(RunEvent::Token { waiting: false, text_len: None }, Some(n.to_string().as_bytes()));
                    queue.wait_handled(number);
                    done.send(n).unwrap();
                }
                let number = queue.push(RunEvent::Returned(0), None);
                queue.wait_handled(number); // released by close
            })
        };
        let (mut batch, mut text) = (Batch::default(), Vec::new());
        for n in 0..100u32 {
            assert!(matches!(queue.pop(Duration::from_secs(10), &mut batch, &mut text), Some(RunEvent::Token { .. })));
            assert_eq!(text, n.to_string().as_bytes());
            // Taking token n released the writer from token n - 1 (it said
            // so before pushing n), but not from token n.
            assert_eq!(seen.try_recv().ok(), n.checked_sub(1), "token {n}");
            assert!(
                seen.recv_timeout(Duration::from_millis(2)).is_err(),
                "the writer went on before token {n} was handled"
            );
        }
        assert!(matches!(queue.pop(Duration::from_secs(10), &mut batch, &mut text), Some(RunEvent::Returned(0))));
        assert_eq!(seen.recv_timeout(Duration::from_secs(10)).unwrap(), 99, "coming back released the last token");
        queue.close();
        writer.join().unwrap();
    }

    #[test]
    fn pop_times_out_when_empty() {
        let queue = RunQueue::default();
        assert!(queue.pop(Duration::from_millis(5), &mut Batch::default(), &mut Vec::new()).is_none());
    }
}
