//! The library's version, as macros (compile time) and `rkl_version()` (run time).

use std::ffi::{c_char, CStr};

/// Major version of the header (compile time). Compare with `rkl_version()`
/// to see which library was loaded at run time.
pub const RKL_VERSION_MAJOR: u32 = 0;
/// Minor version of the header.
pub const RKL_VERSION_MINOR: u32 = 1;
/// Patch version of the header.
pub const RKL_VERSION_PATCH: u32 = 0;

const fn parse(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii_digit(), "version parts are decimal");
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

// The macros in the header must agree with Cargo.toml.
const _: () = assert!(parse(env!("CARGO_PKG_VERSION_MAJOR")) == RKL_VERSION_MAJOR);
const _: () = assert!(parse(env!("CARGO_PKG_VERSION_MINOR")) == RKL_VERSION_MINOR);
const _: () = assert!(parse(env!("CARGO_PKG_VERSION_PATCH")) == RKL_VERSION_PATCH);

const VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
    Ok(v) => v,
    Err(_) => panic!("the version has no NUL"),
};

/// The version of the loaded librkl, as "MAJOR.MINOR.PATCH".
///
/// @return a static NUL-terminated string, never NULL, valid for the life of
///         the process. Thread-safe; does not touch the last error message.
#[no_mangle]
pub unsafe extern "C" fn rkl_version() -> *const c_char {
    ffi_fn!(value on panic: VERSION.as_ptr(), { VERSION.as_ptr() })
}
