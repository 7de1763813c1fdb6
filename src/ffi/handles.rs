//! Handles are tokens, not pointers.
//!
//! An `rkl_model *` or `rkl_stream *` handed to C is a number dressed as a
//! pointer: a type tag in the high bits and a per-type id that is never
//! reused. The library never dereferences it; a registry maps live ids to
//! their objects. So a NULL, closed, double-closed, foreign (a stream where a
//! model is expected) or garbage handle is recognised and refused with
//! `RKL_BAD_HANDLE` instead of being followed. On 64-bit targets the tag
//! makes the value a non-canonical address, so a caller that dereferences
//! one by mistake faults at once instead of corrupting memory.
//!
//! This file has the generic [`Registry`] and the tags. Each registry lives
//! with its type: `MODELS` in `model.rs`, `STREAMS` in `stream.rs`, and the
//! storage tokens of `rkl_cache_info` in `cache.rs` and of `rkl_tensor` in
//! `output.rs`.

use super::error::{FfiError, FfiResult};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[cfg(target_pointer_width = "64")]
mod layout {
    /// Bits of the id; the tag sits above them.
    pub(super) const ID_BITS: u32 = 48;
    pub(super) const MODEL_TAG: usize = 0x6b6d; // "km"
    pub(super) const STREAM_TAG: usize = 0x6b73; // "ks"
    pub(super) const CACHE_TAG: usize = 0x6b63; // "kc"
    pub(super) const TENSOR_TAG: usize = 0x6b74; // "kt"
}

#[cfg(not(target_pointer_width = "64"))]
mod layout {
    pub(super) const ID_BITS: u32 = 24;
    pub(super) const MODEL_TAG: usize = 0xa5;
    pub(super) const STREAM_TAG: usize = 0x5a;
    pub(super) const CACHE_TAG: usize = 0;
    pub(super) const TENSOR_TAG: usize = 0x3c;
}

/// The tag of model handles.
pub(crate) const MODEL_TAG: usize = layout::MODEL_TAG;
/// The tag of stream handles.
pub(crate) const STREAM_TAG: usize = layout::STREAM_TAG;
/// The tag of the storage tokens of `rkl_cache_info` (`cache.rs`). The other
/// registries do not name it in their messages: such a token passed as a
/// model or stream handle is "not a handle issued by rkl".
pub(crate) const CACHE_TAG: usize = layout::CACHE_TAG;

/// The tag of the storage tokens of `rkl_tensor` (`output.rs`).
pub(crate) const TENSOR_TAG: usize = layout::TENSOR_TAG;

const ID_MASK: usize = (1usize << layout::ID_BITS) - 1;

/// A table of live objects of one handle type.
pub struct Registry<T> {
    tag: usize,
    kind: &'static str,
    state: Mutex<State<T>>,
}

struct State<T> {
    /// The next id to hand out; ids below it were issued once.
    next: usize,
    live: BTreeMap<usize, Arc<T>>,
}

/// What a handle value turned out to be.
enum Decoded {
    Null,
    Id(usize),
    OtherType(&'static str),
    Garbage,
}

impl<T> Registry<T> {
    /// An empty registry for the handles tagged `tag`; `kind` names them in
    /// messages ("model").
    pub const fn new(tag: usize, kind: &'static str) -> Registry<T> {
        Registry { tag, kind, state: Mutex::new(State { next: 1, live: BTreeMap::new() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // The table stays consistent even if a holder panicked: every
        // critical section is a single map operation.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn decode(&self, value: usize) -> Decoded {
        if value == 0 {
            return Decoded::Null;
        }
        let tag = value >> layout::ID_BITS;
        let id = value & ID_MASK;
        if tag == self.tag && id != 0 {
            return Decoded::Id(id);
        }
        for (other, name) in [(layout::MODEL_TAG, "model"), (layout::STREAM_TAG, "stream")] {
            if tag == other && other != self.tag && id != 0 {
                return Decoded::OtherType(name);
            }
        }
        Decoded::Garbage
    }

    /// Adds `object` and returns its handle value.
    pub fn insert(&self, object: T) -> FfiResult<usize> {
        let mut state = self.lock();
        let id = state.next;
        if id > ID_MASK {
            return Err(FfiError::new(
                super::status::RKL_RUNTIME_FAILED,
                format!("all {} handle numbers of this process have been used", self.kind),
            ));
        }
        state.next += 1;
        state.live.insert(id, Arc::new(object));
        Ok((self.tag << layout::ID_BITS) | id)
    }

    fn refuse(&self, value: usize, decoded: Decoded, state: &State<T>) -> FfiError {
        let kind = self.kind;
        match decoded {
            Decoded::Null => FfiError::bad_handle(format!("the {kind} handle is NULL")),
            Decoded::OtherType(other) => {
                FfiError::bad_handle(format!("a {other} handle was passed where a {kind} handle is expected"))
            }
            Decoded::Id(id) if id < state.next => FfiError::bad_handle(format!("the {kind} handle was closed")),
            _ => FfiError::bad_handle(format!(
                "{value:#x} is not a {kind} handle issued by rkl (garbage or foreign pointer)"
            )),
        }
    }

    /// The live object behind `value`, or `RKL_BAD_HANDLE` saying why not.
    pub fn get(&self, value: usize) -> FfiResult<Arc<T>> {
        let decoded = self.decode(value);
        let state = self.lock();
        if let Decoded::Id(id) = decoded {
            if let Some(object) = state.live.get(&id) {
                return Ok(object.clone());
            }
        }
        Err(self.refuse(value, decoded, &state))
    }

    /// Removes the object behind `value`. `Ok(None)` for NULL and for a handle
    /// that was issued and already closed (closing is idempotent); an error
    /// for anything that was never a handle of this type.
    pub fn remove(&self, value: usize) -> FfiResult<Option<Arc<T>>> {
        let decoded = self.decode(value);
        let mut state = self.lock();
        match decoded {
            Decoded::Null => Ok(None),
            Decoded::Id(id) => match state.live.remove(&id) {
                Some(object) => Ok(Some(object)),
                None if id < state.next => Ok(None),
                None => Err(self.refuse(value, decoded, &state)),
            },
            _ => Err(self.refuse(value, decoded, &state)),
        }
    }

    /// Like [`Registry::get`], but `Ok(None)` for NULL and for a handle that
    /// was issued and already closed (for idempotent close functions).
    pub fn get_for_close(&self, value: usize) -> FfiResult<Option<Arc<T>>> {
        let decoded = self.decode(value);
        let state = self.lock();
        match decoded {
            Decoded::Null => Ok(None),
            Decoded::Id(id) => match state.live.get(&id) {
                Some(object) => Ok(Some(object.clone())),
                None if id < state.next => Ok(None),
                None => Err(self.refuse(value, decoded, &state)),
            },
            _ => Err(self.refuse(value, decoded, &state)),
        }
    }

    /// Whether `value` is a live handle.
    pub fn contains(&self, value: usize) -> bool {
        matches!(self.decode(value), Decoded::Id(id) if self.lock().live.contains_key(&id))
    }
}

/// The value of a handle pointer.
pub fn value<H>(handle: *const H) -> usize {
    handle as usize
}

/// A handle value as a handle pointer (never dereferenced).
pub fn pointer<H>(value: usize) -> *mut H {
    value as *mut H
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_checked() {
        static R: Registry<u32> = Registry::new(layout::MODEL_TAG, "model");
        let a = R.insert(7).unwrap();
        assert_eq!(*R.get(a).unwrap(), 7);
        assert!(R.get(0).unwrap_err().message.contains("NULL"));
        assert!(R.get(0x1000).unwrap_err().message.contains("not a model handle"));
        let stream_like = (layout::STREAM_TAG << layout::ID_BITS) | 1;
        assert!(R.get(stream_like).unwrap_err().message.contains("stream handle"));
        assert_eq!(*R.remove(a).unwrap().unwrap(), 7);
        assert!(R.get(a).unwrap_err().message.contains("closed"));
        assert!(R.remove(a).unwrap().is_none());
        assert!(R.remove(0).unwrap().is_none());
        let b = R.insert(8).unwrap();
        assert_ne!(a, b, "ids are never reused");
        assert!(R.remove(b + 5).is_err(), "never issued");
    }
}
