//! Calling `rkllm_createDefaultParam` so that it cannot write where it must
//! not, and measuring how much it wrote.
//!
//! It returns `RKLLMParam` by value. A struct that large comes back through
//! a hidden pointer to memory the caller provides (x86-64: the first argument
//! register, handed back in `rax`; AArch64: `x8`), and the callee writes its
//! own struct's size there. rkl passes that pointer itself, to a mapping of
//! [`SLOT`] bytes followed by an inaccessible page, filled with a pattern:
//! a release with a larger struct than any rkl knows (or a broken build)
//! then writes into memory rkl can inspect instead of over the stack of the
//! runtime's thread, and a runaway write faults on the guard page. The call
//! is made twice, with two patterns, so that every byte written is seen
//! (a written byte has the same value both times; an untouched one keeps
//! its pattern). More than [`DEFAULT_PARAM_SLOT`] bytes is refused.

use super::layout_common::{DefaultParamBytes, UntypedFn, DEFAULT_PARAM_SLOT};

/// Bytes mapped for the result, before the guard page: far more than any
/// plausible `RKLLMParam`, so that one larger than rkl knows is measured
/// and refused rather than faulting.
const SLOT: usize = 64 << 10;

/// The two fill patterns.
const PATTERNS: [u8; 2] = [0xA5, 0x5A];

/// Calls `create` (the runtime's `rkllm_createDefaultParam`) and returns
/// what it wrote, bytes it left untouched as 0; an error when it wrote more
/// than [`DEFAULT_PARAM_SLOT`] bytes or the slot could not be mapped.
///
/// # Safety
/// `create` is a `rkllm_createDefaultParam`: a function without arguments
/// that returns a struct in memory.
pub unsafe fn default_params(create: UntypedFn) -> Result<DefaultParamBytes, String> {
    let mut slot = GuardedSlot::new()?;
    let mut runs = [[0u8; DEFAULT_PARAM_SLOT]; 2];
    let mut written = 0;
    for (run, pattern) in runs.iter_mut().zip(PATTERNS) {
        let bytes = slot.fill(pattern);
        // SAFETY: the caller promises `create`'s kind; `bytes` is SLOT
        // writable bytes with a guard page after them.
        unsafe { call_into(create, bytes.as_mut_ptr()) };
        written = written.max(bytes.iter().rposition(|&b| b != pattern).map_or(0, |i| i + 1));
        let kept = written.min(DEFAULT_PARAM_SLOT);
        run[..kept].copy_from_slice(&bytes[..kept]);
    }
    if written > DEFAULT_PARAM_SLOT {
        return Err(format!(
            "rkllm_createDefaultParam wrote {written} bytes of parameters, more than the {DEFAULT_PARAM_SLOT} any \
             release rkl knows could (1.2 writes 208, 1.3 writes 184): this is a newer release or a broken build"
        ));
    }
    let mut image = DefaultParamBytes([0; DEFAULT_PARAM_SLOT]);
    for (i, byte) in image.0.iter_mut().enumerate() {
        // Written bytes agree across both runs; a byte still holding its
        // run's pattern both times was not written (padding).
        if runs[0][i] == runs[1][i] {
            *byte = runs[0][i];
        }
    }
    Ok(image)
}

/// Calls a struct-returning function with `slot` as its result location.
///
/// # Safety
/// `create` takes no arguments and returns a struct in memory; `slot` is
/// writable for as many bytes as it writes.
#[cfg(target_arch = "x86_64")]
unsafe fn call_into(create: UntypedFn, slot: *mut u8) {
    // SAFETY: under the System V ABI a function returning a struct in memory
    // receives the result's address as a hidden first argument and returns
    // it in rax: exactly a function taking and returning one pointer.
    let create = unsafe { std::mem::transmute::<UntypedFn, unsafe extern "C" fn(*mut u8) -> *mut u8>(create) };
    // SAFETY: as the caller promises.
    unsafe { create(slot) };
}

/// Calls a struct-returning function with `slot` as its result location.
///
/// # Safety
/// `create` takes no arguments and returns a struct in memory; `slot` is
/// writable for as many bytes as it writes.
#[cfg(target_arch = "aarch64")]
unsafe fn call_into(create: UntypedFn, slot: *mut u8) {
    // SAFETY: AAPCS64 passes the address of a result returned in memory in
    // x8 (the indirect result register); the call may clobber what the C
    // ABI lets a callee clobber, which clobber_abi("C") declares, and the
    // stack is aligned for a call at an asm block without `nostack`.
    unsafe { std::arch::asm!("blr {f}", f = in(reg) create as usize, in("x8") slot, clobber_abi("C")) };
}

// 32-bit ARM (armhf, ILP32: the runtime ships such builds from 1.2.1) is
// not supported: its struct layouts differ from the LP64 numbers the layout
// files assert (see layout_common.rs), and its result-in-memory call is
// another convention again.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("rkl calls rkllm_createDefaultParam through the result-in-memory ABI of x86-64 or AArch64 only");

/// [`SLOT`] bytes of anonymous memory with an inaccessible page after them.
struct GuardedSlot {
    base: *mut u8,
    len: usize,
}

impl GuardedSlot {
    fn new() -> Result<GuardedSlot, String> {
        // SAFETY: sysconf has no memory arguments.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(4096);
        let len = SLOT.div_ceil(page) * page + page;
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!("cannot map memory for the default parameters: {}", std::io::Error::last_os_error()));
        }
        let slot = GuardedSlot { base: base.cast(), len };
        // SAFETY: the last page lies inside the mapping made above.
        if unsafe { libc::mprotect(base.cast::<u8>().add(len - page).cast(), page, libc::PROT_NONE) } != 0 {
            return Err(format!("cannot guard the default parameters: {}", std::io::Error::last_os_error()));
        }
        Ok(slot)
    }

    /// The SLOT bytes before the guard page, each set to `pattern`. The
    /// mapping's start is page-aligned, so aligned for any struct.
    fn fill(&mut self, pattern: u8) -> &mut [u8] {
        // SAFETY: `base` starts a mapping of at least SLOT writable bytes,
        // owned by self; the slice borrows self mutably, so it is the only
        // one.
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.base, SLOT) };
        bytes.fill(pattern);
        bytes
    }
}

impl Drop for GuardedSlot {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are the mapping made in `new`.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    struct Sized<const N: usize>([u8; N]);

    extern "C" fn returns<const N: usize>() -> Sized<N> {
        let mut out = Sized([0u8; N]);
        for (i, b) in out.0.iter_mut().enumerate() {
            *b = (i % 251) as u8 + 1;
        }
        out
    }

    fn untyped<T>(f: extern "C" fn() -> T) -> UntypedFn {
        // SAFETY: only a change of the pointer's declared type; the function
        // is called through call_into, as a struct-returning function.
        unsafe { std::mem::transmute::<extern "C" fn() -> T, UntypedFn>(f) }
    }

    #[test]
    fn a_known_size_is_read_whole() {
        // SAFETY: `returns` returns a 208-byte struct in memory.
        let image = unsafe { default_params(untyped(returns::<208>)) }.unwrap();
        assert!(image.0[..208].iter().enumerate().all(|(i, &b)| b == (i % 251) as u8 + 1));
        assert!(image.0[208..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_larger_struct_is_measured_and_refused_without_harm() {
        for create in [untyped(returns::<513>), untyped(returns::<4096>), untyped(returns::<60000>)] {
            // SAFETY: each returns a struct in memory, smaller than SLOT.
            let err = unsafe { default_params(create) }.err().expect("refused");
            assert!(err.contains("newer release or a broken build"), "{err}");
        }
        // SAFETY: as above.
        let err = unsafe { default_params(untyped(returns::<4096>)) }.err().expect("refused");
        assert!(err.contains("wrote 4096 bytes"), "{err}");
    }
}
