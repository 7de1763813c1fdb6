//! The queue that carries one run's events from the runtime's callback to
//! the thread reading the stream.
//!
//! Why not a channel: a list channel allocates a block every few dozen
//! messages, and each token's text would need a buffer of its own (the
//! runtime may run far ahead of the reader). Here events and text bytes go
//! into two queues that keep their capacity, so a generation in steady state
//! allocates nothing per token.

use super::trampoline::RunEvent;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Default)]
struct Queue {
    events: VecDeque<RunEvent>,
    /// The texts of the queued `Token` events, back to back, oldest first.
    text: VecDeque<u8>,
}

/// Events of one run, first in first out.
#[derive(Default)]
pub struct RunQueue {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl RunQueue {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Each operation leaves the queue whole before anything can panic.
        self.queue.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Adds an event and wakes the reader. A `Token` event's text is given
    /// here as `text` (its `text_len` is set from it).
    pub fn push(&self, mut event: RunEvent, text: Option<&[u8]>) {
        let mut queue = self.lock();
        if let RunEvent::Token { text_len, .. } = &mut event {
            *text_len = text.map(|bytes| {
                queue.text.extend(bytes);
                bytes.len()
            });
        }
        queue.events.push_back(event);
        drop(queue);
        self.ready.notify_one();
    }

    /// The oldest event, waiting up to `wait` for one. A `Token` event's text
    /// replaces the contents of `text`.
    pub fn pop(&self, wait: Duration, text: &mut Vec<u8>) -> Option<RunEvent> {
        let queue = self.lock();
        let (mut queue, _) = self
            .ready
            .wait_timeout_while(queue, wait, |q| q.events.is_empty())
            .unwrap_or_else(|poison| poison.into_inner());
        let event = queue.events.pop_front()?;
        if let RunEvent::Token { text_len: Some(len), .. } = event {
            text.clear();
            text.extend(queue.text.drain(..len));
        }
        Some(event)
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
        let mut text = Vec::new();
        for n in 0..1000u32 {
            match queue.pop(Duration::from_secs(10), &mut text) {
                Some(RunEvent::Token { text_len: None, .. }) => assert_eq!(n % 7, 0, "token {n} lost its text"),
                Some(RunEvent::Token { text_len: Some(len), .. }) => {
                    assert_eq!(text, n.to_string().as_bytes());
                    assert_eq!(len, text.len());
                }
                other => panic!("expected token {n}, got {other:?}"),
            }
        }
        assert!(matches!(queue.pop(Duration::from_secs(10), &mut text), Some(RunEvent::Returned(0))));
        writer.join().unwrap();
        assert!(queue.pop(Duration::ZERO, &mut text).is_none());
        assert!(queue.lock().text.is_empty(), "text bytes left behind");
    }

    #[test]
    fn pop_times_out_when_empty() {
        let queue = RunQueue::default();
        assert!(queue.pop(Duration::from_millis(5), &mut Vec::new()).is_none());
    }
}
