//! The four input kinds of `rkllm_run` (prompt, token, embed, multimodal):
//! reading them from each release's union, their checks, their hash and
//! their `{input}` text.

use crate::abi::{ArrayInput, MultimodalV12, MultimodalV120, MultimodalV13};
use std::ffi::{c_char, CStr};

/// FNV-1a, 64 bit.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn bytes(mut self, bytes: &[u8]) -> Fnv {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    pub fn f32s(self, values: &[f32]) -> Fnv {
        values.iter().fold(self, |h, v| h.bytes(&v.to_le_bytes()))
    }

    pub fn i32s(self, values: &[i32]) -> Fnv {
        values.iter().fold(self, |h, v| h.bytes(&v.to_le_bytes()))
    }

    /// 16 lowercase hex digits.
    pub fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The most floats (or ids) one input part may make the simulator copy.
const MAX_ELEMENTS: u64 = 1 << 28;

/// One image or video part of a multimodal input.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaPart {
    /// Images, or videos.
    pub count: u64,
    /// Frames per video (1 for images).
    pub frames: u64,
    /// Tokens per image or frame.
    pub tokens: u64,
    /// Width and height; `None` where the layout has none (1.2.0).
    pub size: Option<(u64, u64)>,
    /// start, end, content.
    pub tags: [String; 3],
    pub floats: Vec<f32>,
}

impl MediaPart {
    pub fn prefill_tokens(&self) -> u64 {
        self.count * self.frames * self.tokens
    }
}

/// A multimodal input.
#[derive(Clone, Debug, PartialEq)]
pub struct Multimodal {
    pub prompt: String,
    /// `None`: 1.3 with `n_image` 0.
    pub image: Option<MediaPart>,
    /// 1.3 with `n_video` > 0 only.
    pub video: Option<MediaPart>,
    /// 1.3's layout: `<video>` is a marker too.
    pub v13: bool,
}

/// A run's input as given.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Prompt(String),
    Tokens(Vec<i32>),
    Embed { floats: Vec<f32>, n_tokens: u64 },
    Multimodal(Box<Multimodal>),
}

pub const IMAGE_MARKER: &str = "<image>";
pub const VIDEO_MARKER: &str = "<video>";

impl Payload {
    /// The string `{prompt}` shows: the prompt, empty for token and embed input.
    pub fn prompt(&self) -> &str {
        match self {
            Payload::Prompt(p) => p,
            Payload::Multimodal(m) => &m.prompt,
            Payload::Tokens(_) | Payload::Embed { .. } => "",
        }
    }

    /// The prompt text that is prefilled with the chat template (markers
    /// removed); `None` for token and embed input, which have no text.
    pub fn text(&self) -> Option<String> {
        match self {
            Payload::Prompt(p) => Some(p.clone()),
            Payload::Multimodal(m) => {
                let text = m.prompt.replace(IMAGE_MARKER, "");
                Some(if m.v13 { text.replace(VIDEO_MARKER, "") } else { text })
            }
            Payload::Tokens(_) | Payload::Embed { .. } => None,
        }
    }

    /// Prefill tokens that do not come from text: ids, embeddings, images
    /// and video frames.
    pub fn fixed_tokens(&self) -> u64 {
        match self {
            Payload::Prompt(_) => 0,
            Payload::Tokens(ids) => ids.len() as u64,
            Payload::Embed { n_tokens, .. } => *n_tokens,
            Payload::Multimodal(m) => {
                m.image.as_ref().map_or(0, MediaPart::prefill_tokens)
                    + m.video.as_ref().map_or(0, MediaPart::prefill_tokens)
            }
        }
    }

    /// FNV-1a 64 over the input as given (README).
    pub fn hash(&self) -> u64 {
        let h = Fnv::default();
        match self {
            Payload::Prompt(p) => h.bytes(p.as_bytes()),
            Payload::Tokens(ids) => h.i32s(ids),
            Payload::Embed { floats, .. } => h.f32s(floats),
            Payload::Multimodal(m) => {
                let h = h.bytes(m.prompt.as_bytes());
                let h = h.f32s(m.image.as_ref().map_or(&[][..], |p| &p.floats));
                h.f32s(m.video.as_ref().map_or(&[][..], |p| &p.floats))
            }
        }
        .0
    }

    /// The `{input}` text (README).
    pub fn describe(&self, hidden_size: u64) -> String {
        let fnv = Fnv(self.hash()).hex();
        match self {
            Payload::Prompt(_) => "prompt".into(),
            Payload::Tokens(ids) => format!("tokens n={} fnv={fnv}", ids.len()),
            Payload::Embed { n_tokens, .. } => format!("embed n={n_tokens} dim={hidden_size} fnv={fnv}"),
            Payload::Multimodal(m) => {
                let size = |s: Option<(u64, u64)>| s.map_or_else(|| "?x?".to_string(), |(w, h)| format!("{w}x{h}"));
                let mut out = match &m.image {
                    Some(i) => format!(
                        "multimodal images={} tokens={} size={} tags={}",
                        i.count,
                        i.tokens,
                        size(i.size),
                        i.tags.join("|")
                    ),
                    None => "multimodal images=0 tokens=0 size=0x0 tags=||".into(),
                };
                if let Some(v) = &m.video {
                    out.push_str(&format!(
                        " videos={} frames={} frame_tokens={} frame={} video_tags={}",
                        v.count,
                        v.frames,
                        v.tokens,
                        size(v.size),
                        v.tags.join("|")
                    ));
                }
                out.push_str(&format!(" fnv={fnv}"));
                out
            }
        }
    }
}

/// A required UTF-8 C string.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string.
pub unsafe fn c_text(ptr: *const c_char, what: &str) -> Result<String, String> {
    if ptr.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: non-NULL and NUL-terminated per the contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map(str::to_owned).map_err(|_| format!("{what} is not UTF-8"))
}

/// `a * b * ...` as an element count, refused when absurdly large.
fn elements(factors: &[u64], what: &str) -> Result<usize, String> {
    let n = factors.iter().try_fold(1u64, |acc, f| acc.checked_mul(*f)).filter(|n| *n <= MAX_ELEMENTS);
    n.map(|n| n as usize).ok_or_else(|| format!("{what}: {factors:?} elements are too many"))
}

/// Copies `n` elements from the caller: all of them are read, so a short
/// buffer is an overread under ASan or valgrind.
///
/// # Safety
/// `ptr` is non-NULL and points at `n` readable `T`.
pub unsafe fn copy_in<T: Copy>(ptr: *const T, n: usize) -> Vec<T> {
    if n == 0 {
        return Vec::new();
    }
    // SAFETY: per the contract.
    unsafe { std::slice::from_raw_parts(ptr, n) }.to_vec()
}

/// Token input: ids non-NULL, n >= 1, every id in 0..vocab_size.
///
/// # Safety
/// A non-NULL `a.data` points at `a.len` i32.
pub unsafe fn read_tokens(a: ArrayInput, vocab_size: u64) -> Result<Payload, String> {
    if a.data.is_null() {
        return Err("token input: input_ids is NULL".into());
    }
    if a.len == 0 {
        return Err("token input: n_tokens is 0".into());
    }
    let n = elements(&[a.len as u64], "token input")?;
    // SAFETY: non-NULL; `n` ids per the contract.
    let ids = unsafe { copy_in(a.data as *const i32, n) };
    check_ids(&ids, vocab_size).map_err(|e| format!("token input: {e}"))?;
    Ok(Payload::Tokens(ids))
}

/// Every id in 0..vocab_size.
pub fn check_ids(ids: &[i32], vocab_size: u64) -> Result<(), String> {
    match ids.iter().position(|id| *id < 0 || *id as u64 >= vocab_size) {
        Some(i) => Err(format!("token {i} = {} is outside 0..{vocab_size}", ids[i])),
        None => Ok(()),
    }
}

/// Embed input: non-NULL, n_tokens >= 1, n_tokens * hidden_size finite floats.
///
/// # Safety
/// A non-NULL `a.data` points at `a.len * hidden_size` f32.
pub unsafe fn read_embed(a: ArrayInput, hidden_size: u64) -> Result<Payload, String> {
    if a.data.is_null() {
        return Err("embed input: embed is NULL".into());
    }
    if a.len == 0 {
        return Err("embed input: n_tokens is 0".into());
    }
    let n = elements(&[a.len as u64, hidden_size], "embed input")?;
    // SAFETY: non-NULL; `n` floats per the contract.
    let floats = unsafe { copy_in(a.data as *const f32, n) };
    if let Some(i) = floats.iter().position(|v| !v.is_finite()) {
        return Err(format!("embed input: float {i} = {} is not finite", floats[i]));
    }
    Ok(Payload::Embed { floats, n_tokens: a.len as u64 })
}

/// How often `marker` occurs in `prompt`.
fn markers(prompt: &str, marker: &str) -> u64 {
    prompt.matches(marker).count() as u64
}

/// Reads an image or video part after its counts were checked.
///
/// # Safety
/// A non-NULL `embed` points at `count * frames * tokens * hidden_size` f32.
unsafe fn media(
    what: &str,
    embed: *const f32,
    (count, frames, tokens): (u64, u64, u64),
    size: Option<(u64, u64)>,
    tags: [String; 3],
    hidden_size: u64,
) -> Result<MediaPart, String> {
    if embed.is_null() {
        return Err(format!("multimodal input: {what}_embed is NULL"));
    }
    let n = elements(&[count, frames, tokens, hidden_size], "multimodal input")?;
    // SAFETY: non-NULL; `n` floats per the contract.
    let floats = unsafe { copy_in(embed, n) };
    Ok(MediaPart { count, frames, tokens, size, tags, floats })
}

/// The init image tags of 1.2's layouts, read at the run.
///
/// # Safety
/// Each address is 0 or a C string.
unsafe fn init_tags(addrs: [usize; 3]) -> Result<[String; 3], String> {
    let names = ["img_start", "img_end", "img_content"];
    let mut out: [String; 3] = Default::default();
    for i in 0..3 {
        // SAFETY: the caller keeps init's strings alive for the handle's life.
        out[i] = unsafe { c_text(addrs[i] as *const c_char, &format!("RKLLMParam.{}", names[i])) }?;
    }
    Ok(out)
}

fn check_markers(prompt: &str, marker: &str, want: u64) -> Result<(), String> {
    let found = markers(prompt, marker);
    if found != want {
        return Err(format!("multimodal input: the prompt has {found} {marker} marker(s), not {want}"));
    }
    Ok(())
}

/// 1.2.0's multimodal input: one image, no size; tags from init.
///
/// # Safety
/// The pointers in `m` are NULL or valid for what they describe; `tags` as
/// for init's strings.
pub unsafe fn read_v120(m: MultimodalV120, tags: [usize; 3], hidden_size: u64) -> Result<Payload, String> {
    // SAFETY: per the contract.
    let prompt = unsafe { c_text(m.prompt, "multimodal input: prompt") }?;
    if m.n_image_tokens == 0 {
        return Err("multimodal input: n_image_tokens is 0".into());
    }
    check_markers(&prompt, IMAGE_MARKER, 1)?;
    // SAFETY: per the contract.
    let tags = unsafe { init_tags(tags) }?;
    // SAFETY: per the contract.
    let image = unsafe { media("image", m.image_embed, (1, 1, m.n_image_tokens as u64), None, tags, hidden_size) }?;
    Ok(Payload::Multimodal(Box::new(Multimodal { prompt, image: Some(image), video: None, v13: false })))
}

/// 1.2.1b1 .. 1.2.3's multimodal input; tags from init.
///
/// # Safety
/// As for [`read_v120`].
pub unsafe fn read_v12(m: MultimodalV12, tags: [usize; 3], hidden_size: u64) -> Result<Payload, String> {
    // SAFETY: per the contract.
    let prompt = unsafe { c_text(m.prompt, "multimodal input: prompt") }?;
    if m.n_image == 0 {
        return Err("multimodal input: n_image is 0".into());
    }
    if m.n_image_tokens == 0 {
        return Err("multimodal input: n_image_tokens is 0".into());
    }
    check_markers(&prompt, IMAGE_MARKER, m.n_image as u64)?;
    // SAFETY: per the contract.
    let tags = unsafe { init_tags(tags) }?;
    let counts = (m.n_image as u64, 1, m.n_image_tokens as u64);
    let size = Some((m.image_width as u64, m.image_height as u64));
    // SAFETY: per the contract.
    let image = unsafe { media("image", m.image_embed, counts, size, tags, hidden_size) }?;
    Ok(Payload::Multimodal(Box::new(Multimodal { prompt, image: Some(image), video: None, v13: false })))
}

/// 1.3's multimodal input: an image part (n_image 0: none) and a video
/// part (n_video 0: none), each with its tags; at least one part.
///
/// # Safety
/// The pointers in `m` are NULL or valid for what they describe.
pub unsafe fn read_v13(m: MultimodalV13, hidden_size: u64) -> Result<Payload, String> {
    // SAFETY: per the contract.
    let prompt = unsafe { c_text(m.prompt, "multimodal input: prompt") }?;
    if m.n_image == 0 && m.n_video == 0 {
        return Err("multimodal input: n_image and n_video are 0 (nothing multimodal)".into());
    }
    check_markers(&prompt, IMAGE_MARKER, m.n_image as u64)?;
    check_markers(&prompt, VIDEO_MARKER, m.n_video as u64)?;
    let image = if m.n_image == 0 {
        None
    } else {
        if m.n_image_tokens == 0 {
            return Err("multimodal input: n_image_tokens is 0".into());
        }
        // SAFETY: per the contract.
        let tags = unsafe {
            [
                c_text(m.image_start, "multimodal input: image_start")?,
                c_text(m.image_end, "multimodal input: image_end")?,
                c_text(m.image_content, "multimodal input: image_content")?,
            ]
        };
        let counts = (m.n_image as u64, 1, m.n_image_tokens as u64);
        let size = Some((m.image_width as u64, m.image_height as u64));
        // SAFETY: per the contract.
        Some(unsafe { media("image", m.image_embed, counts, size, tags, hidden_size) }?)
    };
    let video = if m.n_video == 0 {
        None
    } else {
        if m.n_frame_per_video == 0 {
            return Err("multimodal input: n_frame_per_video is 0".into());
        }
        if m.n_frame_tokens == 0 {
            return Err("multimodal input: n_frame_tokens is 0".into());
        }
        // SAFETY: per the contract.
        let tags = unsafe {
            [
                c_text(m.video_start, "multimodal input: video_start")?,
                c_text(m.video_end, "multimodal input: video_end")?,
                c_text(m.video_content, "multimodal input: video_content")?,
            ]
        };
        let counts = (m.n_video as u64, m.n_frame_per_video as u64, m.n_frame_tokens as u64);
        let size = Some((m.frame_width as u64, m.frame_height as u64));
        // SAFETY: per the contract.
        Some(unsafe { media("video", m.video_embed, counts, size, tags, hidden_size) }?)
    };
    Ok(Payload::Multimodal(Box::new(Multimodal { prompt, image, video, v13: true })))
}

/// Element `[t][j]` of a last-hidden-layer or logits result for an input
/// whose hash is `hash` (README, "Infer modes").
pub fn value(hash: u64, t: u64, j: u64) -> f32 {
    let seed = (hash ^ (hash >> 32)) as u32;
    let step = 131u32.wrapping_mul(t as u32).wrapping_add(7u32.wrapping_mul(j as u32));
    ((seed.wrapping_add(step) % 2003) as f32 - 1001.0) / 1024.0
}

/// `rows` x `width` values of [`value`], row-major.
pub fn rows(hash: u64, rows: u64, width: u64) -> Vec<f32> {
    (0..rows).flat_map(|t| (0..width).map(move |j| value(hash, t, j))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr;

    #[test]
    fn fnv_1a_64_known_values() {
        assert_eq!(Fnv::default().bytes(b"").0, 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv::default().bytes(b"a").hex(), "af63dc4c8601ec8c");
        assert_eq!(Fnv::default().bytes(b"foobar").hex(), "85944171f73967e8");
        // Integers and floats hash as their little-endian bytes.
        assert_eq!(Fnv::default().i32s(&[1, -2]).0, Fnv::default().bytes(&[1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff]).0);
        assert_eq!(Fnv::default().f32s(&[1.0]).0, Fnv::default().bytes(&[0, 0, 0x80, 0x3f]).0);
    }

    #[test]
    fn the_value_formula() {
        // seed = (h ^ (h >> 32)) as u32
        let h = 0x0000_0001_0000_0002u64;
        assert_eq!(value(h, 0, 0), (3.0 - 1001.0) / 1024.0);
        assert_eq!(value(h, 2, 5), (300.0 - 1001.0) / 1024.0);
        // the modulus: seed 2000, t 1 gives 2131 % 2003 = 128
        assert_eq!(value(2000, 1, 0), (128.0 - 1001.0) / 1024.0);
        // u32 wrapping arithmetic
        let h = 0xffff_ffffu64;
        let seed = 0xffff_ffffu32;
        let want = ((seed.wrapping_add(131 + 7 * 3) % 2003) as f32 - 1001.0) / 1024.0;
        assert_eq!(value(h, 1, 3), want);
        let r = rows(h, 2, 3);
        assert_eq!(r.len(), 6);
        assert_eq!(r[3 + 2], value(h, 1, 2));
        assert!(r.iter().all(|v| (-1001.0 / 1024.0..=1001.0 / 1024.0).contains(v)));
    }

    #[test]
    fn placeholders_of_each_kind() {
        assert_eq!(Payload::Prompt("hi".into()).describe(64), "prompt");
        let ids = Payload::Tokens(vec![1, 2]);
        assert_eq!(ids.describe(64), format!("tokens n=2 fnv={}", Fnv::default().i32s(&[1, 2]).hex()));
        assert_eq!(ids.prompt(), "");
        assert_eq!(ids.fixed_tokens(), 2);
        let e = Payload::Embed { floats: vec![0.5; 8], n_tokens: 2 };
        assert_eq!(e.describe(4), format!("embed n=2 dim=4 fnv={}", Fnv::default().f32s(&[0.5; 8]).hex()));
        let part = |count, frames, size, tags: [&str; 3]| MediaPart {
            count,
            frames,
            tokens: 3,
            size,
            tags: tags.map(String::from),
            floats: vec![1.0; 2],
        };
        let m = Payload::Multimodal(Box::new(Multimodal {
            prompt: "<image>x<video>".into(),
            image: Some(part(1, 1, Some((4, 5)), ["<s>", "</s>", "<c>"])),
            video: Some(part(2, 6, Some((7, 8)), ["<v>", "</v>", "<f>"])),
            v13: true,
        }));
        let fnv = Fnv::default().bytes(b"<image>x<video>").f32s(&[1.0; 4]).hex();
        assert_eq!(
            m.describe(64),
            format!(
                "multimodal images=1 tokens=3 size=4x5 tags=<s>|</s>|<c> videos=2 frames=6 frame_tokens=3 \
                 frame=7x8 video_tags=<v>|</v>|<f> fnv={fnv}"
            )
        );
        assert_eq!(m.text().as_deref(), Some("x"));
        assert_eq!(m.fixed_tokens(), 3 + 2 * 6 * 3);
        let old = Payload::Multimodal(Box::new(Multimodal {
            prompt: "a<video><image>".into(),
            image: Some(part(1, 1, None, ["a", "b", "c"])),
            video: None,
            v13: false,
        }));
        assert!(old.describe(64).starts_with("multimodal images=1 tokens=3 size=?x? tags=a|b|c fnv="));
        assert_eq!(old.text().as_deref(), Some("a<video>"));
    }

    fn array(data: *const std::ffi::c_void, len: usize) -> ArrayInput {
        ArrayInput { data, len }
    }

    #[test]
    fn token_and_embed_checks() {
        let ids = [0i32, 5, 255];
        // SAFETY: (this test's calls) each pointer is NULL or points at `len` elements.
        unsafe {
            assert!(read_tokens(array(ids.as_ptr().cast(), 3), 256).is_ok());
            assert!(read_tokens(array(ids.as_ptr().cast(), 3), 255).unwrap_err().contains("token 2 = 255"));
            assert!(read_tokens(array(ptr::null(), 3), 256).unwrap_err().contains("NULL"));
            assert!(read_tokens(array(ids.as_ptr().cast(), 0), 256).unwrap_err().contains("0"));
            let neg = [-1i32];
            assert!(read_tokens(array(neg.as_ptr().cast(), 1), 256).is_err());
            let floats = [0.25f32; 6];
            assert_eq!(
                read_embed(array(floats.as_ptr().cast(), 2), 3).unwrap(),
                Payload::Embed { floats: floats.to_vec(), n_tokens: 2 }
            );
            assert!(read_embed(array(floats.as_ptr().cast(), 0), 3).is_err());
            assert!(read_embed(array(ptr::null(), 1), 3).is_err());
            let bad = [0.0f32, f32::NAN];
            assert!(read_embed(array(bad.as_ptr().cast(), 1), 2).unwrap_err().contains("float 1"));
        }
    }

    fn v13(prompt: &std::ffi::CStr, floats: &[f32]) -> MultimodalV13 {
        MultimodalV13 {
            prompt: prompt.as_ptr(),
            image_embed: floats.as_ptr(),
            n_image_tokens: 2,
            n_image: 1,
            image_start: c"<s>".as_ptr(),
            image_end: c"</s>".as_ptr(),
            image_content: c"<c>".as_ptr(),
            image_width: 3,
            image_height: 4,
            video_embed: floats.as_ptr(),
            n_frame_tokens: 1,
            n_frame_per_video: 2,
            n_video: 0,
            video_start: ptr::null(),
            video_end: ptr::null(),
            video_content: ptr::null(),
            frame_width: 0,
            frame_height: 0,
        }
    }

    #[test]
    fn multimodal_checks() {
        let floats = [0.5f32; 8];
        let tags = [c"<i>".as_ptr() as usize, c"</i>".as_ptr() as usize, c"<u>".as_ptr() as usize];
        // SAFETY: (this test's calls) the structs point at live strings and
        // at least as many floats as they describe (hidden size 2).
        unsafe {
            let m = v13(c"look <image>", &floats);
            assert!(read_v13(m, 2).unwrap().describe(2).contains("images=1 tokens=2 size=3x4 tags=<s>|</s>|<c> fnv="));
            assert!(read_v13(MultimodalV13 { n_image: 0, ..m }, 2).unwrap_err().contains("nothing multimodal"));
            assert!(read_v13(MultimodalV13 { n_image: 2, ..m }, 2).unwrap_err().contains("1 <image> marker"));
            assert!(read_v13(MultimodalV13 { image_end: ptr::null(), ..m }, 2).unwrap_err().contains("image_end"));
            assert!(read_v13(MultimodalV13 { image_embed: ptr::null(), ..m }, 2).unwrap_err().contains("NULL"));
            assert!(read_v13(MultimodalV13 { n_image_tokens: 0, ..m }, 2).is_err());
            // Video only: the NULL image fields are not used.
            let v = MultimodalV13 {
                prompt: c"a <video>".as_ptr(),
                n_image: 0,
                image_start: ptr::null(),
                n_video: 1,
                video_start: c"<v>".as_ptr(),
                video_end: c"</v>".as_ptr(),
                video_content: c"<f>".as_ptr(),
                ..m
            };
            let p = read_v13(v, 2).unwrap();
            assert_eq!(p.fixed_tokens(), 2);
            assert!(p.describe(2).starts_with("multimodal images=0 tokens=0 size=0x0 tags=|| videos=1 frames=2"));
            assert!(read_v13(MultimodalV13 { video_end: ptr::null(), ..v }, 2).unwrap_err().contains("video_end"));
            assert!(read_v13(MultimodalV13 { n_frame_per_video: 0, ..v }, 2).is_err());

            let m12 = MultimodalV12 {
                prompt: c"<image><image>".as_ptr(),
                image_embed: floats.as_ptr(),
                n_image_tokens: 2,
                n_image: 2,
                image_width: 9,
                image_height: 8,
            };
            let p = read_v12(m12, tags, 2).unwrap();
            assert!(p.describe(2).starts_with("multimodal images=2 tokens=2 size=9x8 tags=<i>|</i>|<u> fnv="));
            assert_eq!(p.text().as_deref(), Some(""));
            assert!(read_v12(MultimodalV12 { n_image: 0, ..m12 }, tags, 2).is_err());
            assert!(read_v12(m12, [0, tags[1], tags[2]], 2).unwrap_err().contains("img_start"));
            let m120 = MultimodalV120 { prompt: c"<image>?".as_ptr(), image_embed: floats.as_ptr(), n_image_tokens: 4 };
            let p = read_v120(m120, tags, 2).unwrap();
            assert!(p.describe(2).starts_with("multimodal images=1 tokens=4 size=?x? tags=<i>|</i>|<u> fnv="));
            assert!(read_v120(MultimodalV120 { prompt: c"no marker".as_ptr(), ..m120 }, tags, 2).is_err());
            assert!(read_v120(MultimodalV120 { prompt: ptr::null(), ..m120 }, tags, 2).is_err());
        }
    }
}
