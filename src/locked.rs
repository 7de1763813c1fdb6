//! Locking a mutex whatever happened while it was held: a panic caught in
//! a caller's callback must not make a model's state unreachable, and every
//! state rkl guards stays consistent between its statements.

use std::sync::{Mutex, MutexGuard};

/// `m`'s guard, also when a holder panicked.
pub(crate) fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
