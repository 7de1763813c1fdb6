//! `RKLLMParam`: the default image each release writes, and the field checks
//! init makes.

use crate::abi::{ExtendParam, ParamV12, ParamV13, SamplingParam};
use crate::config::Abi;
use std::ffi::c_char;
use std::mem::{offset_of, size_of};

/// The largest `RKLLMParam` of any imitated release (1.2's).
pub const MAX_PARAM_SIZE: usize = size_of::<ParamV12>();

/// Static strings 1.2's defaults point at.
static IMG_START: &[u8] = b"<image>\0";
static IMG_END: &[u8] = b"</image>\0";
static IMG_CONTENT: &[u8] = b"<unk>\0";

fn put<const N: usize>(image: &mut [u8], offset: usize, bytes: [u8; N]) {
    image[offset..offset + N].copy_from_slice(&bytes);
}

/// The defaults of `abi` as raw bytes (padding and reserved bytes zero), and
/// how many of them that release's struct has.
pub fn default_image(abi: Abi) -> ([u8; MAX_PARAM_SIZE], usize) {
    let mut img = [0u8; MAX_PARAM_SIZE];
    // Written field by field at the asserted offsets, so no padding byte is
    // ever copied from an uninitialised struct.
    macro_rules! head {
        ($t:ty) => {{
            put(&mut img, offset_of!($t, model_path), 0usize.to_ne_bytes());
            put(&mut img, offset_of!($t, max_context_len), 512i32.to_ne_bytes());
            put(&mut img, offset_of!($t, max_new_tokens), (-1i32).to_ne_bytes());
            put(&mut img, offset_of!($t, top_k), 40i32.to_ne_bytes());
            put(&mut img, offset_of!($t, n_keep), (-1i32).to_ne_bytes());
            put(&mut img, offset_of!($t, top_p), 0.9f32.to_ne_bytes());
            put(&mut img, offset_of!($t, temperature), 0.8f32.to_ne_bytes());
            put(&mut img, offset_of!($t, repeat_penalty), 1.1f32.to_ne_bytes());
            put(&mut img, offset_of!($t, frequency_penalty), 0.0f32.to_ne_bytes());
            put(&mut img, offset_of!($t, presence_penalty), 0.0f32.to_ne_bytes());
            put(&mut img, offset_of!($t, mirostat), 0i32.to_ne_bytes());
            put(&mut img, offset_of!($t, mirostat_tau), 5.0f32.to_ne_bytes());
            put(&mut img, offset_of!($t, mirostat_eta), 0.1f32.to_ne_bytes());
            put(&mut img, offset_of!($t, skip_special_token), [1u8]);
            put(&mut img, offset_of!($t, is_async), [0u8]);
            let ext = offset_of!($t, extend_param);
            put(&mut img, ext + offset_of!(ExtendParam, base_domain_id), 0i32.to_ne_bytes());
            put(&mut img, ext + offset_of!(ExtendParam, embed_flash), [1u8]);
            put(&mut img, ext + offset_of!(ExtendParam, enabled_cpus_num), [4u8]);
            // RK3588's four big cores, CPU 4..7.
            put(&mut img, ext + offset_of!(ExtendParam, enabled_cpus_mask), 0xF0u32.to_ne_bytes());
            // 1.2.0 and 1.2.1b1 have no n_batch: their byte 12 is reserved.
            let n_batch = if crate::config::OLD_FAMILY { 0u8 } else { 1u8 };
            put(&mut img, ext + offset_of!(ExtendParam, n_batch), [n_batch]);
            put(&mut img, ext + offset_of!(ExtendParam, use_cross_attn), [0u8]);
        }};
    }
    match abi {
        Abi::V1_2 => {
            head!(ParamV12);
            put(&mut img, offset_of!(ParamV12, img_start), (IMG_START.as_ptr() as usize).to_ne_bytes());
            put(&mut img, offset_of!(ParamV12, img_end), (IMG_END.as_ptr() as usize).to_ne_bytes());
            put(&mut img, offset_of!(ParamV12, img_content), (IMG_CONTENT.as_ptr() as usize).to_ne_bytes());
            (img, size_of::<ParamV12>())
        }
        Abi::V1_3 => {
            head!(ParamV13);
            put(&mut img, offset_of!(ParamV13, ignore_eos_token), [0u8]);
            (img, size_of::<ParamV13>())
        }
    }
}

/// Writes the imitated release's defaults to `out`: exactly that release's
/// struct size and no more, as the real function returning by value does.
/// Called from the `rkllm_createDefaultParam` entry stub with the caller's
/// hidden result pointer.
///
/// # Safety
/// `out` is valid for writes of the imitated release's `RKLLMParam`.
pub unsafe extern "C" fn write_default_param(out: *mut u8) {
    let _in = crate::handle::InRuntime::enter();
    let (image, len) = default_image(crate::config::env().abi);
    // SAFETY: per this function's contract; `image` holds at least `len` bytes.
    unsafe { std::ptr::copy_nonoverlapping(image.as_ptr(), out, len) };
    #[cfg(feature = "oversized-param")]
    // SAFETY: this build imitates a release whose RKLLMParam is
    // OVERSIZED_PARAM bytes; its callers must provide that much.
    unsafe {
        std::ptr::write_bytes(out.add(len), 0, OVERSIZED_PARAM - len)
    };
}

/// The `RKLLMParam` size of the release the `oversized-param` build
/// imitates: a future one whose struct is larger than any rkl knows.
#[cfg(feature = "oversized-param")]
pub const OVERSIZED_PARAM: usize = 4096;

/// The fields of either release's `RKLLMParam` that init uses or checks.
#[derive(Clone, Copy)]
pub struct CommonParam {
    pub model_path: *const c_char,
    pub max_context_len: i32,
    pub max_new_tokens: i32,
    pub sampling: SamplingParam,
    pub skip_special_token: u8,
    pub is_async: u8,
    /// 1.3 only.
    pub ignore_eos_token: Option<u8>,
    pub extend: ExtendParam,
    /// 1.3 checks n_batch.
    pub check_n_batch: bool,
    /// 1.2.0 and 1.2.1b1: n_batch and use_cross_attn do not exist, the
    /// reserved bytes start at 12 of the extend param.
    pub reserved_from_12: bool,
}

macro_rules! common_from {
    ($p:expr, $ignore_eos:expr, $check_n_batch:expr, $reserved_from_12:expr) => {{
        let p = $p;
        CommonParam {
            model_path: p.model_path,
            max_context_len: p.max_context_len,
            max_new_tokens: p.max_new_tokens,
            sampling: SamplingParam {
                top_k: p.top_k,
                top_p: p.top_p,
                temperature: p.temperature,
                repeat_penalty: p.repeat_penalty,
                frequency_penalty: p.frequency_penalty,
                presence_penalty: p.presence_penalty,
                mirostat: p.mirostat,
                mirostat_tau: p.mirostat_tau,
                mirostat_eta: p.mirostat_eta,
            },
            skip_special_token: p.skip_special_token,
            is_async: p.is_async,
            ignore_eos_token: $ignore_eos,
            extend: p.extend_param,
            check_n_batch: $check_n_batch,
            reserved_from_12: $reserved_from_12,
        }
    }};
}

impl CommonParam {
    /// `old_family`: the 1.2.0 / 1.2.1b1 reading of the same 208 bytes.
    pub fn from_v12(p: &ParamV12, old_family: bool) -> CommonParam {
        common_from!(p, None, false, old_family)
    }

    pub fn from_v13(p: &ParamV13) -> CommonParam {
        common_from!(p, Some(p.ignore_eos_token), true, false)
    }
}

fn check_bool(name: &str, v: u8) -> Result<(), String> {
    if v <= 1 {
        Ok(())
    } else {
        Err(format!("{name} = {v} is not a bool (0 or 1)"))
    }
}

/// The checks shared by init's sampling fields and 1.3's per-run
/// `sampling_params`: what a struct read at the wrong offset trips over.
pub fn check_sampling(s: &SamplingParam) -> Result<(), String> {
    let floats = [
        ("top_p", s.top_p),
        ("temperature", s.temperature),
        ("repeat_penalty", s.repeat_penalty),
        ("frequency_penalty", s.frequency_penalty),
        ("presence_penalty", s.presence_penalty),
        ("mirostat_tau", s.mirostat_tau),
        ("mirostat_eta", s.mirostat_eta),
    ];
    for (name, v) in floats {
        if !v.is_finite() {
            return Err(format!("{name} = {v} is not a finite number"));
        }
    }
    if s.top_k < 0 {
        return Err(format!("top_k = {} is negative", s.top_k));
    }
    if !(0.0..=1.0).contains(&s.top_p) {
        return Err(format!("top_p = {} is outside 0..=1", s.top_p));
    }
    if s.temperature < 0.0 {
        return Err(format!("temperature = {} is negative", s.temperature));
    }
    if !(0..=2).contains(&s.mirostat) {
        return Err(format!("mirostat = {} is not 0, 1 or 2", s.mirostat));
    }
    Ok(())
}

/// Init's field-by-field checks (README "Behaviour of the exports").
pub fn check_param(p: &CommonParam) -> Result<(), String> {
    if p.model_path.is_null() {
        return Err("model_path is NULL".into());
    }
    if p.max_context_len <= 0 {
        return Err(format!("max_context_len = {} is not > 0", p.max_context_len));
    }
    check_sampling(&p.sampling)?;
    check_bool("skip_special_token", p.skip_special_token)?;
    check_bool("is_async", p.is_async)?;
    if let Some(v) = p.ignore_eos_token {
        check_bool("ignore_eos_token", v)?;
    }
    let e = &p.extend;
    if p.reserved_from_12 && (e.n_batch != 0 || e.use_cross_attn != 0) {
        let (i, v) = if e.n_batch != 0 { (12, e.n_batch) } else { (13, e.use_cross_attn as u8) };
        return Err(format!("extend_param byte {i} = {v} is not zero (reserved in 1.2.0 and 1.2.1b1)"));
    }
    if !(0..=1).contains(&e.embed_flash) {
        return Err(format!("extend_param.embed_flash = {} is not 0 or 1", e.embed_flash));
    }
    if !(0..=8).contains(&e.enabled_cpus_num) {
        return Err(format!("extend_param.enabled_cpus_num = {} is outside 0..=8", e.enabled_cpus_num));
    }
    if !(0..=1).contains(&e.use_cross_attn) {
        return Err(format!("extend_param.use_cross_attn = {} is not 0 or 1", e.use_cross_attn));
    }
    if p.check_n_batch && e.n_batch > 8 {
        return Err(format!("extend_param.n_batch = {} is outside 0..=8", e.n_batch));
    }
    if let Some(i) = e.reserved.iter().position(|b| *b != 0) {
        return Err(format!("extend_param.reserved[{i}] = {} is not zero", e.reserved[i]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: Copy>(img: &[u8]) -> T {
        assert!(img.len() >= size_of::<T>());
        // SAFETY: the image is at least size_of::<T>() bytes and every field
        // type of the param structs accepts any bit pattern.
        unsafe { std::ptr::read_unaligned(img.as_ptr() as *const T) }
    }

    #[test]
    fn default_images_have_the_signals_of_each_release() {
        let (img, len) = default_image(Abi::V1_2);
        assert_eq!(len, 208);
        assert_ne!(u64::from_ne_bytes(img[64..72].try_into().unwrap()), 0);
        assert_ne!(u64::from_ne_bytes(img[72..80].try_into().unwrap()), 0);
        assert_eq!((img[92], img[93]), (1, 4));
        let p: ParamV12 = read(&img);
        assert!(check_param(&CommonParam { model_path: c"x".as_ptr(), ..CommonParam::from_v12(&p, false) }).is_ok());

        let (img, len) = default_image(Abi::V1_3);
        assert_eq!(len, 184);
        assert_eq!((img[64], img[65]), (1, 4));
        assert!(img[74..178].iter().all(|b| *b == 0));
        assert!(img[184..].iter().all(|b| *b == 0));
        let p: ParamV13 = read(&img);
        assert_eq!((p.max_context_len, p.top_k, p.top_p, p.skip_special_token), (512, 40, 0.9, 1));
        assert!(check_param(&CommonParam { model_path: c"x".as_ptr(), ..CommonParam::from_v13(&p) }).is_ok());
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let (img, _) = default_image(Abi::V1_3);
        let base = CommonParam { model_path: c"x".as_ptr(), ..CommonParam::from_v13(&read::<ParamV13>(&img)) };
        let fails = |f: &dyn Fn(&mut CommonParam)| {
            let mut p = base;
            f(&mut p);
            check_param(&p).unwrap_err()
        };
        assert!(fails(&|p| p.sampling.top_p = 2.0).contains("top_p"));
        assert!(fails(&|p| p.sampling.temperature = f32::INFINITY).contains("temperature"));
        assert!(fails(&|p| p.sampling.top_k = -1).contains("top_k"));
        assert!(fails(&|p| p.max_context_len = 0).contains("max_context_len"));
        assert!(fails(&|p| p.extend.reserved[50] = 1).contains("reserved[50]"));
        assert!(fails(&|p| p.extend.n_batch = 9).contains("n_batch"));
        assert!(fails(&|p| p.extend.enabled_cpus_num = 9).contains("enabled_cpus_num"));
        assert!(fails(&|p| p.extend.embed_flash = 2).contains("embed_flash"));
        assert!(fails(&|p| p.is_async = 7).contains("is_async"));
        assert!(fails(&|p| p.model_path = std::ptr::null()).contains("model_path"));
        assert!(fails(&|p| {
            p.reserved_from_12 = true;
            p.extend.n_batch = 1
        })
        .contains("byte 12"));
        assert!(fails(&|p| {
            p.reserved_from_12 = true;
            p.extend.n_batch = 0;
            p.extend.use_cross_attn = 1
        })
        .contains("byte 13"));
    }
}
