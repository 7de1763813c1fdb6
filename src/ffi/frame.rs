//! The panic/status frame around every export, and the per-thread last error
//! message.
//!
//! Installing the logger is not done here but by `ffi_fn!` before the frame
//! (see `mod.rs`), so that this file needs nothing of the logging that it
//! frames.

use super::error::{copy_message, FfiResult};
use super::status::{rkl_status, RKL_OK, RKL_PANIC};
use std::any::Any;
use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// The message of the last failed call on this thread ("" after a success).
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(message: String) {
    // try_with: during thread teardown the slot may be gone; then the message
    // is lost but the status still says what happened.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = message;
        }
    });
}

/// Turns `type_name` of a function item declared inside an export into the
/// export's name (`rkl::ffi::model::rkl_open::__rkl_here` → `rkl_open`).
pub fn function_name<F>(_: F) -> &'static str {
    let full = std::any::type_name::<F>();
    let outer = full.rsplit_once("::").map_or(full, |(head, _)| head);
    outer.rsplit_once("::").map_or(outer, |(_, name)| name)
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs an export body that returns a status: clears the last error, catches
/// panics, maps errors and records their message (prefixed by `name`).
pub fn status_frame(name: &'static str, body: impl FnOnce() -> FfiResult) -> rkl_status {
    set_last_error(String::new());
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            // A call the caller's callback made inside this one may have
            // failed and left its message; this call succeeded.
            set_last_error(String::new());
            RKL_OK
        }
        Ok(Err(e)) => {
            set_last_error(format!("{name}: {}", e.message));
            e.status
        }
        Err(payload) => {
            set_last_error(format!("{name}: internal error (bug in rkl): {}", panic_text(&*payload)));
            RKL_PANIC
        }
    }
}

/// Runs an export body that returns a value and cannot fail; a panic gives
/// `default` (and a message). Does not touch the last error otherwise, so
/// calls like `rkl_status_str` can be made between a failure and reading its
/// message.
pub fn value_frame<T>(name: &'static str, default: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            set_last_error(format!("{name}: internal error (bug in rkl): {}", panic_text(&*payload)));
            default
        }
    }
}

/// Copies the message of the last failed rkl call on the calling thread.
///
/// Every call that returns a status other than ::RKL_OK leaves a message that
/// says what was wrong (prefixed with the function's name); a call that
/// succeeds clears it. `rkl_last_error_message`, `rkl_status_str` and
/// `rkl_version` leave it untouched.
///
/// Works like `snprintf`: copies at most `len - 1` bytes (cut at a UTF-8
/// character boundary) and a terminating NUL into `buf`, and returns the full
/// length of the message in bytes, without the NUL. So the message was cut
/// when the result is `>= len`; call again with a buffer of `result + 1`
/// bytes. `buf` may be NULL when `len` is 0 (to ask for the length).
///
/// @param buf  caller memory of at least `len` bytes, written during the call
///             only; or NULL with `len` 0.
/// @param len  size of `buf` in bytes.
/// @return the length of the message (0 when the last call succeeded).
///
/// Thread-safety: the message is per thread; this reads the calling thread's.
#[no_mangle]
pub unsafe extern "C" fn rkl_last_error_message(buf: *mut c_char, len: usize) -> usize {
    ffi_fn!(value on panic: 0, {
        LAST_ERROR
            .try_with(|slot| {
                let Ok(message) = slot.try_borrow() else { return 0 };
                // SAFETY: passed on from the caller, as documented above.
                unsafe { copy_message(&message, buf, len) }
            })
            .unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::error::FfiError;

    #[test]
    fn names_come_from_the_enclosing_function() {
        fn rkl_example() -> &'static str {
            fn __rkl_here() {}
            function_name(__rkl_here)
        }
        assert_eq!(rkl_example(), "rkl_example");
    }

    #[test]
    fn messages_are_cut_at_character_boundaries() {
        let status = status_frame("rkl_test", || Err(FfiError::invalid("héllo")));
        assert_eq!(status, rkl_status::RKL_INVALID_ARGUMENT);
        let mut buf = [0x55 as c_char; 12];
        // "rkl_test: héllo" is 16 bytes; 'é' sits at bytes 11..13.
        // SAFETY: buf has 12 bytes.
        let n = unsafe { rkl_last_error_message(buf.as_mut_ptr(), buf.len()) };
        assert_eq!(n, "rkl_test: héllo".len());
        // SAFETY: the call wrote a NUL inside buf.
        let got = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        assert_eq!(got.to_str().unwrap(), "rkl_test: h");
        // SAFETY: NULL with len 0 only asks for the length.
        assert_eq!(unsafe { rkl_last_error_message(std::ptr::null_mut(), 0) }, n);
        assert_eq!(status_frame("rkl_test", || Ok(())), RKL_OK);
        // SAFETY: as above.
        assert_eq!(unsafe { rkl_last_error_message(std::ptr::null_mut(), 0) }, 0);
    }

    #[test]
    fn panics_become_a_status() {
        let status = status_frame("rkl_test", || panic!("boom"));
        assert_eq!(status, RKL_PANIC);
        let got = LAST_ERROR.with(|m| m.borrow().clone());
        assert!(got.contains("boom") && got.starts_with("rkl_test:"), "{got}");
    }
}
