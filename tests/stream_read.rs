//! rkl_stream_read(): all queued text in one call, whole UTF-8 characters,
//! the end and failures as rkl_stream_next() reports them, argument checks,
//! and mixing with rkl_stream_next().

mod common;

use common::*;
use rkl::ffi::*;
use std::ffi::{c_char, CString};
use std::mem::size_of;
use std::ptr::{null, null_mut};

struct Open {
    model: *mut rkl_model,
    _strings: Vec<CString>,
}

fn open_c(tag: &str, lines: &[&str]) -> Open {
    let path = CString::new(model_file(tag, lines).to_str().unwrap()).unwrap();
    let runtime = CString::new(sim_library("").to_str().unwrap()).unwrap();
    // SAFETY: a zeroed struct is filled by its init; the strings outlive the call.
    unsafe {
        let mut p: rkl_open_params = std::mem::zeroed();
        assert_eq!(rkl_open_params_init(&mut p, size_of::<rkl_open_params>()), RKL_OK);
        p.model_path = path.as_ptr();
        p.runtime_path = runtime.as_ptr();
        let mut m = null_mut();
        assert_eq!(rkl_open(&p, &mut m), RKL_OK);
        Open { model: m, _strings: vec![path, runtime] }
    }
}

fn stream(model: *mut rkl_model, prompt: &str) -> *mut rkl_stream {
    let prompt = CString::new(prompt).unwrap();
    // SAFETY: as above.
    unsafe {
        let mut g: rkl_generate_params = std::mem::zeroed();
        assert_eq!(rkl_generate_params_init(&mut g, size_of::<rkl_generate_params>()), RKL_OK);
        g.prompt = prompt.as_ptr();
        let mut s = null_mut();
        assert_eq!(rkl_stream_open(model, &g, &mut s), RKL_OK);
        s
    }
}

/// Reads a stream to its end with buffers of `cap` bytes; every chunk must be
/// valid UTF-8 on its own. Returns the text and the number of calls with text.
fn read_all(s: *mut rkl_stream, cap: usize) -> (String, usize) {
    let mut buf = vec![0u8; cap];
    let mut all = String::new();
    let mut calls = 0;
    loop {
        let mut n = usize::MAX;
        // SAFETY: `buf` has `cap` bytes.
        let st = unsafe { rkl_stream_read(s, -1, buf.as_mut_ptr().cast::<c_char>(), cap, &mut n) };
        assert_eq!(st, RKL_OK);
        assert!(n <= cap);
        if n == 0 {
            return (all, calls);
        }
        calls += 1;
        all.push_str(std::str::from_utf8(&buf[..n]).expect("a chunk of whole characters"));
    }
}

#[test]
fn reads_everything_queued_in_few_calls() {
    let o = open_c("read-all", &[&format!("reply = {RICH_REPLY}")]);
    let want = RICH_REPLY.replace("{prompt}", "batch");
    // Let the zero-cost run finish first: then one call takes it all.
    let s = stream(o.model, "batch");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (text, calls) = read_all(s, 1 << 16);
    assert_eq!(text, want);
    // The end again, and the figures.
    let mut buf = [0u8; 8];
    let mut n = 7;
    // SAFETY: valid buffer of 8 bytes.
    unsafe {
        assert_eq!(rkl_stream_read(s, 0, buf.as_mut_ptr().cast(), 8, &mut n), RKL_OK);
        assert_eq!(n, 0);
        let mut st: rkl_stats = std::mem::zeroed();
        st.struct_size = size_of::<rkl_stats>();
        assert_eq!(rkl_stream_stats(s, &mut st), RKL_OK);
        assert_eq!(st.finish, rkl_finish_reason::RKL_FINISH_END);
        assert!(st.tokens > 10);
        // Batches, not a call per token: one call, unless the machine is so
        // slow (emulation, sanitizers) that the run had not finished yet.
        assert!(calls >= 1 && calls * 4 < st.tokens as usize, "{calls} calls for {} tokens", st.tokens);
        assert_eq!(rkl_stream_close(s), RKL_OK);
        assert_eq!(rkl_close(o.model), RKL_OK);
    }
}

#[test]
fn small_buffers_split_at_character_boundaries() {
    let o = open_c("read-small", &[&format!("reply = {RICH_REPLY}")]);
    let want = RICH_REPLY.replace("{prompt}", "small");
    for cap in [4usize, 5, 7, 16] {
        let s = stream(o.model, "small");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (text, calls) = read_all(s, cap);
        assert_eq!(text, want, "cap {cap}");
        assert!(calls >= want.len() / cap, "cap {cap}: {calls} calls");
        // SAFETY: handle values.
        assert_eq!(unsafe { rkl_stream_close(s) }, RKL_OK);
    }
    // SAFETY: as above.
    assert_eq!(unsafe { rkl_close(o.model) }, RKL_OK);
}

#[test]
fn mixes_with_stream_next_and_hands_out_each_byte_once() {
    let o = open_c("read-mix", &[&format!("reply = {RICH_REPLY}")]);
    let want = RICH_REPLY.replace("{prompt}", "mix");
    let s = stream(o.model, "mix");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mut all = Vec::new();
    let mut buf = [0u8; 6];
    let mut turn = 0;
    loop {
        turn += 1;
        // SAFETY: valid buffers; the text of rkl_stream_next lives until the next call.
        unsafe {
            if turn % 2 == 0 {
                let (mut t, mut n) = (null(), 0usize);
                assert_eq!(rkl_stream_next(s, -1, &mut t, &mut n), RKL_OK);
                if t.is_null() {
                    break;
                }
                all.extend_from_slice(std::slice::from_raw_parts(t.cast::<u8>(), n));
            } else {
                let mut n = 0;
                assert_eq!(rkl_stream_read(s, -1, buf.as_mut_ptr().cast(), buf.len(), &mut n), RKL_OK);
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
            }
        }
    }
    assert_eq!(String::from_utf8(all).unwrap(), want);
    // SAFETY: handle values.
    unsafe {
        assert_eq!(rkl_stream_close(s), RKL_OK);
        assert_eq!(rkl_close(o.model), RKL_OK);
    }
}

#[test]
fn text_before_a_failure_then_the_failure_once_then_the_end() {
    let o = open_c("read-fail", &["reply = one two three four five six seven", "fault = error@token:4"]);
    let s = stream(o.model, "x");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut buf = [0u8; 256];
    let mut text = Vec::new();
    let mut failures = Vec::new();
    loop {
        let mut n = 0;
        // SAFETY: valid buffer.
        let st = unsafe { rkl_stream_read(s, -1, buf.as_mut_ptr().cast(), buf.len(), &mut n) };
        if st != RKL_OK {
            failures.push(st);
            continue;
        }
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
        assert!(failures.is_empty(), "text after the failure");
    }
    assert_eq!(failures, vec![RKL_RUNTIME_FAILED]);
    assert!(!text.is_empty(), "the text before the failure is delivered");
    let mut msg = [0 as c_char; 256];
    // SAFETY: valid buffer.
    unsafe {
        assert!(rkl_stream_error_message(s, msg.as_mut_ptr(), msg.len()) > 0);
        assert_eq!(rkl_stream_close(s), RKL_OK);
        assert_eq!(rkl_close(o.model), RKL_OK);
    }
}

#[test]
fn refuses_bad_arguments_and_times_out_without_writing() {
    let o = open_c("read-args", &["reply = slow words here", "time_scale = 1", "decode_us_per_token = 200000"]);
    let s = stream(o.model, "x");
    let mut buf = [0x55u8; 8];
    let mut n = 0x66usize;
    // SAFETY: deliberately NULL or short arguments; valid otherwise.
    unsafe {
        assert_eq!(rkl_stream_read(s, 0, null_mut(), 8, &mut n), RKL_NULL_ARGUMENT);
        assert_eq!(rkl_stream_read(s, 0, buf.as_mut_ptr().cast(), 8, null_mut()), RKL_NULL_ARGUMENT);
        assert_eq!(rkl_stream_read(s, 0, buf.as_mut_ptr().cast(), 3, &mut n), RKL_INVALID_ARGUMENT);
        assert_eq!(rkl_stream_read(s, 0, buf.as_mut_ptr().cast(), 0, &mut n), RKL_INVALID_ARGUMENT);
        assert_eq!(rkl_stream_read(null_mut(), 0, buf.as_mut_ptr().cast(), 8, &mut n), RKL_BAD_HANDLE);
        assert_eq!(rkl_stream_read(0x1234 as *mut rkl_stream, 0, buf.as_mut_ptr().cast(), 8, &mut n), RKL_BAD_HANDLE);
        assert_eq!(rkl_stream_read(s, 10, buf.as_mut_ptr().cast(), 8, &mut n), RKL_TIMEOUT);
        assert_eq!((buf, n), ([0x55u8; 8], 0x66), "outputs untouched on failure");
        assert_eq!(rkl_stream_close(s), RKL_OK);
        assert_eq!(rkl_stream_read(s, 0, buf.as_mut_ptr().cast(), 8, &mut n), RKL_BAD_HANDLE);
        assert_eq!(rkl_close(o.model), RKL_OK);
    }
}

#[test]
fn isolated_streams_read_the_same() {
    let path = model_file("read-iso", &[&format!("reply = {RICH_REPLY}")]);
    // The C API with RKL_OPEN_ISOLATED; librkl finds this build's worker
    // through RKL_HOST (only this test in this executable opens isolated).
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let runtime = CString::new(sim_library("").to_str().unwrap()).unwrap();
    std::env::set_var("RKL_HOST", env!("CARGO_BIN_EXE_rkl-host"));
    // SAFETY: as in open_c.
    unsafe {
        let mut p: rkl_open_params = std::mem::zeroed();
        assert_eq!(rkl_open_params_init(&mut p, size_of::<rkl_open_params>()), RKL_OK);
        p.model_path = cpath.as_ptr();
        p.runtime_path = runtime.as_ptr();
        p.flags = RKL_OPEN_ISOLATED;
        let mut m = null_mut();
        assert_eq!(rkl_open(&p, &mut m), RKL_OK);
        let s = stream(m, "iso");
        let (text, _) = read_all(s, 1 << 12);
        assert_eq!(text, RICH_REPLY.replace("{prompt}", "iso"));
        assert_eq!(rkl_stream_close(s), RKL_OK);
        assert_eq!(rkl_close(m), RKL_OK);
    }
}
