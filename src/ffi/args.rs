//! Reading arguments from C: text pointers and versioned structs.
//!
//! Every struct that crosses the boundary starts with `size_t struct_size`.
//! Input structs are copied: a size smaller than the first published
//! version is refused; a larger one (a caller built against a newer header)
//! is accepted only when every byte this library does not know is zero, so a
//! newer field that was actually set is never silently ignored. Output
//! structs are written only up to the smaller of the caller's `struct_size`
//! and ours, and only on success.

use super::error::{FfiError, FfiResult};
use crate::checked_text;
use std::ffi::{c_char, CStr};
use std::mem::{size_of, MaybeUninit};

/// A `#[repr(C)]` struct that starts with `struct_size`.
///
/// # Safety
/// `Self` must be `#[repr(C)]`, start with a `usize` field, and be valid for
/// any bit pattern except in the bytes at `BOOL_OFFSETS`, which must be 0 or 1.
pub unsafe trait Versioned: Copy {
    /// The C name, for messages.
    const NAME: &'static str;
    /// The size of the first published version of the struct.
    const V1_SIZE: usize;
    /// Offsets of `bool` fields (checked to hold 0 or 1 before use).
    const BOOL_OFFSETS: &'static [usize] = &[];
}

/// The largest `struct_size` accepted: far beyond any version a struct will
/// reach, small enough that a garbage size is refused before rkl reads (or
/// an `_init` zeroes) that many bytes of the caller's memory.
pub(crate) const MAX_STRUCT_SIZE: usize = 4096;

/// Refuses a `struct_size` above [`MAX_STRUCT_SIZE`].
fn check_plausible(size: usize, what: &str) -> FfiResult<()> {
    if size > MAX_STRUCT_SIZE {
        return Err(FfiError::invalid(format!(
            "{what}: struct_size is {size}, more than any version of the struct ({MAX_STRUCT_SIZE} at most); \
             set struct_size = sizeof(*ptr)"
        )));
    }
    Ok(())
}

/// Reads the caller's `struct_size`, checking that the struct is at least the
/// first version and at most [`MAX_STRUCT_SIZE`].
///
/// # Safety
/// `ptr` is NULL or points to readable memory of at least `size_t`.
unsafe fn struct_size_of<T: Versioned>(ptr: *const T, what: &str) -> FfiResult<usize> {
    if ptr.is_null() {
        return Err(FfiError::null(what));
    }
    // SAFETY: the caller promises a readable struct that starts with size_t.
    let size = unsafe { ptr.cast::<usize>().read_unaligned() };
    if size < T::V1_SIZE {
        return Err(FfiError::invalid(format!(
            "{what}: struct_size is {size}, smaller than {} (sizeof({}) of the oldest version); \
             set struct_size = sizeof(*ptr), or call the struct's _init function",
            T::V1_SIZE,
            T::NAME
        )));
    }
    check_plausible(size, what)?;
    Ok(size)
}

/// Copies an input struct from C, applying the `struct_size` rules.
///
/// # Safety
/// `ptr` is NULL or points to `struct_size` readable bytes.
pub unsafe fn read_struct<T: Versioned>(ptr: *const T, what: &str) -> FfiResult<T> {
    // SAFETY: forwarded from the caller.
    let size = unsafe { struct_size_of(ptr, what)? };
    let ours = size_of::<T>();
    let bytes = ptr.cast::<u8>();
    if size > ours {
        // SAFETY: the caller says `size` bytes are readable.
        let extra = unsafe { std::slice::from_raw_parts(bytes.add(ours), size - ours) };
        if let Some(at) = extra.iter().position(|&b| b != 0) {
            return Err(FfiError::invalid(format!(
                "{what}: struct_size is {size} but this librkl knows {} only {ours} bytes; byte {} \
                 is set, so the caller uses a field this library does not have (link a newer librkl, \
                 or leave the new fields zero)",
                T::NAME,
                ours + at
            )));
        }
    }
    let copied = size.min(ours);
    let mut out = MaybeUninit::<T>::zeroed();
    // SAFETY: `copied` bytes are readable at `bytes` and fit in `out`.
    unsafe { std::ptr::copy_nonoverlapping(bytes, out.as_mut_ptr().cast::<u8>(), copied) };
    // SAFETY: `out` is fully initialised (zeroed, then copied over); the
    // offsets come from the trait and lie inside it.
    let raw = unsafe { std::slice::from_raw_parts(out.as_ptr().cast::<u8>(), ours) };
    for &offset in T::BOOL_OFFSETS {
        if raw[offset] > 1 {
            return Err(FfiError::invalid(format!(
                "{what}: a bool field at offset {offset} holds {}, not 0 or 1 (uninitialised struct?)",
                raw[offset]
            )));
        }
    }
    // SAFETY: T is valid for any bit pattern once its bools are 0 or 1
    // (trait contract), which was just checked.
    Ok(unsafe { out.assume_init() })
}

/// Checks an output struct's `struct_size` before any work is done, so a
/// bad one is refused up front.
///
/// # Safety
/// `ptr` is NULL or points to a struct starting with a readable `size_t`.
pub unsafe fn check_out_struct<T: Versioned>(ptr: *mut T, what: &str) -> FfiResult<()> {
    // SAFETY: forwarded from the caller.
    unsafe { struct_size_of(ptr.cast_const(), what) }.map(|_| ())
}

/// Writes `value` into the caller's struct, keeping the caller's
/// `struct_size` and leaving bytes beyond our size alone.
///
/// # Safety
/// `ptr` points to `struct_size` writable bytes (checked before with
/// [`check_out_struct`]).
pub unsafe fn write_struct<T: Versioned>(ptr: *mut T, value: &T, what: &str) -> FfiResult<()> {
    // SAFETY: forwarded from the caller.
    let size = unsafe { struct_size_of(ptr.cast_const(), what)? };
    let n = size.min(size_of::<T>());
    let src = (value as *const T).cast::<u8>();
    // SAFETY: `n` bytes are writable at `ptr` and readable at `value`; the
    // first usize (struct_size) is skipped so the caller's value stays.
    unsafe {
        std::ptr::copy_nonoverlapping(
            src.add(size_of::<usize>()),
            ptr.cast::<u8>().add(size_of::<usize>()),
            n - size_of::<usize>(),
        )
    };
    Ok(())
}

/// Fills a struct for an `_init` function: zeroes `struct_size` bytes (so
/// fields newer than this library read as zero), writes our defaults over the
/// first `min(struct_size, ours)` bytes, and stores `struct_size`.
///
/// # Safety
/// `ptr` is NULL or points to `struct_size` writable bytes.
pub unsafe fn init_struct<T: Versioned>(ptr: *mut T, struct_size: usize, defaults: &T, what: &str) -> FfiResult<()> {
    if ptr.is_null() {
        return Err(FfiError::null(what));
    }
    if struct_size < T::V1_SIZE {
        return Err(FfiError::invalid(format!(
            "struct_size is {struct_size}, smaller than {} (sizeof({}) of the oldest version); pass sizeof(*{what})",
            T::V1_SIZE,
            T::NAME
        )));
    }
    check_plausible(struct_size, what)?;
    let n = struct_size.min(size_of::<T>());
    // SAFETY: the caller says `struct_size` bytes are writable; `n` bytes of
    // `defaults` are readable.
    unsafe {
        std::ptr::write_bytes(ptr.cast::<u8>(), 0, struct_size);
        std::ptr::copy_nonoverlapping((defaults as *const T).cast::<u8>(), ptr.cast::<u8>(), n);
        ptr.cast::<usize>().write_unaligned(struct_size);
    }
    Ok(())
}

/// Borrows a required C string argument as UTF-8 text without NUL.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string that stays valid for `'a`.
pub unsafe fn text<'a>(ptr: *const c_char, what: &str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(FfiError::null(what));
    }
    // SAFETY: the caller promises a NUL-terminated string valid for 'a.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    Ok(checked_text(what, bytes)?)
}

/// Like [`text`], but NULL gives `None`.
///
/// # Safety
/// As [`text`].
pub unsafe fn optional_text<'a>(ptr: *const c_char, what: &str) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { text(ptr, what) }.map(Some)
    }
}

/// Writes an out-parameter (only called on success).
///
/// # Safety
/// `ptr` is non-NULL and writable (checked by the caller up front).
pub unsafe fn put<T>(ptr: *mut T, value: T) {
    // SAFETY: forwarded from the caller; unaligned-safe.
    unsafe { ptr.write_unaligned(value) }
}

/// Refuses a NULL required out-parameter before any work is done.
pub fn require<T>(ptr: *mut T, what: &str) -> FfiResult<()> {
    if ptr.is_null() {
        Err(FfiError::null(what))
    } else {
        Ok(())
    }
}

/// Most elements one array from C may hold (1 GiB of floats).
pub const MAX_ARRAY: usize = crate::input::MAX_INPUT_FLOATS;

/// `factors` multiplied, refused (naming `what`) when a factor is 0 or
/// the product overflows or passes [`MAX_ARRAY`].
pub fn shape(what: &str, factors: &[(&str, usize)]) -> FfiResult<usize> {
    let mut total = 1usize;
    for &(name, n) in factors {
        if n == 0 {
            return Err(FfiError::invalid(format!("{what}: {name} is 0")));
        }
        total = total.checked_mul(n).filter(|&t| t <= MAX_ARRAY).ok_or_else(|| {
            let shape: Vec<String> = factors.iter().map(|(n, v)| format!("{n} {v}")).collect();
            FfiError::invalid(format!("{what}: {} is more than {MAX_ARRAY} elements", shape.join(" x ")))
        })?;
    }
    Ok(total)
}

/// Copies `count` elements from C (owned from here on, whatever the caller
/// does with its array after the call returns). NULL with a count, or a
/// misaligned pointer, is refused; `count` must be 1..=[`MAX_ARRAY`].
///
/// # Safety
/// `ptr` is NULL or points to `count` readable elements.
pub unsafe fn array<T: Copy>(ptr: *const T, count: usize, what: &str) -> FfiResult<std::sync::Arc<[T]>> {
    if count == 0 {
        return Err(FfiError::invalid(format!("{what}: the count is 0")));
    }
    if ptr.is_null() {
        return Err(FfiError::null(what));
    }
    if count > MAX_ARRAY {
        return Err(FfiError::invalid(format!("{what}: {count} elements is more than {MAX_ARRAY}")));
    }
    if (ptr as usize) % std::mem::align_of::<T>() != 0 {
        return Err(FfiError::invalid(format!("{what}: the array is not aligned for its element type")));
    }
    // SAFETY: non-NULL, aligned, `count` readable elements (the caller's
    // promise), and count * size_of::<T>() is at most 4 GiB, far below isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) }.into())
}

/// Refuses a pointer the chosen input kind does not use, so a field set by
/// mistake is never silently ignored.
pub fn unused<T>(ptr: *const T, count: usize, what: &str, kind: &str) -> FfiResult<()> {
    if !ptr.is_null() || count != 0 {
        return Err(FfiError::invalid(format!("{what} is set, but input_kind is {kind}, which does not use it")));
    }
    Ok(())
}
