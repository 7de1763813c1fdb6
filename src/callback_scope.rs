//! Which generation's chunk callback this thread is running, so that a call
//! made from inside it can be refused instead of deadlocking (both modes).

use std::cell::Cell;

thread_local! {
    /// The key (a runtime's id, or an isolated model's) whose chunk callback
    /// this thread is running (0: none).
    static IN_CALLBACK: Cell<usize> = const { Cell::new(0) };
}

/// Whether this thread is inside a chunk callback of a generation with `key`.
pub(crate) fn in_callback_of(key: usize) -> bool {
    IN_CALLBACK.with(|c| c.get()) == key
}

/// Marks this thread as inside a chunk callback of `key` until dropped
/// (also when the callback panics).
pub(crate) struct CallbackScope(usize);

impl CallbackScope {
    pub(crate) fn enter(key: usize) -> CallbackScope {
        CallbackScope(IN_CALLBACK.with(|c| c.replace(key)))
    }
}

impl Drop for CallbackScope {
    fn drop(&mut self) {
        IN_CALLBACK.with(|c| c.set(self.0));
    }
}
