//! Prompt cache files: `RKSIMKV1`, u32 prompt tokens (little-endian), u32
//! reserved (0), then `tokens * kv_bytes_per_token` bytes of filler made of
//! the model name and a newline, repeated.
//!
//! Loading checks the magic and the size; with [`CacheCheck::Full`] (model
//! key `cache_check = full`) also every other byte, so that a load succeeds
//! only on exactly what a save of this model wrote.

use crate::model_file::CacheCheck;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"RKSIMKV1";
pub const HEADER_LEN: u64 = 16;

/// Size of a cache file holding `tokens` tokens.
pub fn file_size(tokens: u64, kv_bytes_per_token: u64) -> u64 {
    HEADER_LEN + tokens * kv_bytes_per_token
}

/// The filler's repeating unit for a model.
fn unit(model_name: &str) -> Vec<u8> {
    model_name.bytes().chain([b'\n']).collect()
}

/// A block of whole units, at least `len` bytes long.
fn filler_block(unit: &[u8], len: usize) -> Vec<u8> {
    unit.iter().copied().cycle().take(unit.len() * len.div_ceil(unit.len()).max(1)).collect()
}

/// Writes a cache file of `tokens` prompt tokens.
pub fn write(path: &Path, tokens: u64, kv_bytes_per_token: u64, model_name: &str) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write prompt cache '{}': {e}", path.display());
    let count = u32::try_from(tokens).map_err(|_| format!("{tokens} tokens do not fit a cache file"))?;
    let file = File::create(path).map_err(fail)?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    out.write_all(MAGIC).map_err(fail)?;
    out.write_all(&count.to_le_bytes()).map_err(fail)?;
    out.write_all(&0u32.to_le_bytes()).map_err(fail)?;

    // A block that is a whole number of units keeps the pattern continuous.
    let unit = unit(model_name);
    let block = filler_block(&unit, (65536 / unit.len()).max(1) * unit.len());
    let mut left = tokens * kv_bytes_per_token;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n]).map_err(fail)?;
        left -= n as u64;
    }
    out.flush().map_err(fail)
}

/// Checks a cache file (magic, size for this model; with [`CacheCheck::Full`]
/// every byte, against what a save of the model named `model_name` writes)
/// and returns its tokens.
pub fn read_tokens(path: &Path, kv_bytes_per_token: u64, check: CacheCheck, model_name: &str) -> Result<u64, String> {
    let fail = |e: std::io::Error| format!("cannot read prompt cache '{}': {e}", path.display());
    let mut file = File::open(path).map_err(fail)?;
    let len = file.metadata().map_err(fail)?.len();
    let mut header = [0u8; HEADER_LEN as usize];
    if len < HEADER_LEN {
        return Err(format!("'{}' is too short for a prompt cache", path.display()));
    }
    file.read_exact(&mut header).map_err(fail)?;
    if &header[..8] != MAGIC {
        return Err(format!("'{}' is not a prompt cache (bad magic)", path.display()));
    }
    let tokens = u64::from(u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")));
    let expected = file_size(tokens, kv_bytes_per_token);
    if len != expected {
        return Err(format!(
            "'{}' has {len} bytes, but {tokens} tokens need {expected} with this model",
            path.display()
        ));
    }
    if check == CacheCheck::Full {
        check_body(&mut file, path, &header, len - HEADER_LEN, model_name)?;
    }
    Ok(tokens)
}

/// The reserved word and the filler, read to the end of the file.
fn check_body(file: &mut File, path: &Path, header: &[u8], body: u64, model_name: &str) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot read prompt cache '{}': {e}", path.display());
    let differs = |at: u64| {
        format!("'{}' holds other bytes than a save of model '{model_name}' wrote (byte {at} differs)", path.display())
    };
    if let Some(i) = header[12..16].iter().position(|&b| b != 0) {
        return Err(differs(12 + i as u64));
    }
    const BLOCK: usize = 1 << 16;
    let unit = unit(model_name);
    // Long enough to compare a whole block starting at any phase of the unit.
    let pattern = filler_block(&unit, BLOCK + unit.len());
    let mut buf = vec![0u8; BLOCK];
    let mut done = 0u64;
    while done < body {
        let n = (body - done).min(BLOCK as u64) as usize;
        file.read_exact(&mut buf[..n]).map_err(fail)?;
        let phase = (done % unit.len() as u64) as usize;
        if buf[..n] != pattern[phase..phase + n] {
            let first = (0..n).find(|&i| buf[i] != pattern[phase + i]).unwrap_or(0);
            return Err(differs(HEADER_LEN + done + first as u64));
        }
        done += n as u64;
    }
    if file.read(&mut buf[..1]).map_err(fail)? != 0 {
        return Err(format!("'{}' grew while it was read", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rkllm-sim-cache-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("cache.bin")
    }

    #[test]
    fn size_formula() {
        assert_eq!(file_size(0, 114688), 16);
        // 332 prompt tokens of Qwen3-0.6B: about 38 MB.
        assert_eq!(file_size(332, 114688), 16 + 332 * 114688);
    }

    #[test]
    fn written_files_have_the_formula_size_and_load_back() {
        let path = temp("roundtrip");
        write(&path, 100, 1000, "qwen").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, file_size(100, 1000));
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(&bytes[8..16], &[100, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[16..26], b"qwen\nqwen\n");
        // The pattern runs on across the 64 KiB write blocks.
        assert_eq!(bytes[16 + 65536], b"qwen\n"[65536 % 5]);
        assert_eq!(read_tokens(&path, 1000, CacheCheck::Header, "qwen"), Ok(100));
        assert_eq!(read_tokens(&path, 1000, CacheCheck::Full, "qwen"), Ok(100));
        assert!(read_tokens(&path, 999, CacheCheck::Header, "qwen").is_err(), "another model's size");
        assert!(read_tokens(&path, 1000, CacheCheck::Full, "qwex").is_err(), "another model's filler");
    }

    #[test]
    fn a_full_check_sees_every_byte() {
        let path = temp("full");
        write(&path, 50, 3000, "sim").unwrap();
        let good = std::fs::read(&path).unwrap();
        for at in [12, 15, 16, 17, 65535 + 16, 65536 + 16, good.len() - 1] {
            let mut bytes = good.clone();
            bytes[at] ^= 0x20;
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(read_tokens(&path, 3000, CacheCheck::Header, "sim"), Ok(50), "byte {at}");
            let err = read_tokens(&path, 3000, CacheCheck::Full, "sim").unwrap_err();
            assert!(err.contains(&format!("byte {at} differs")), "{err}");
        }
    }

    #[test]
    fn damaged_files_are_refused() {
        let path = temp("damaged");
        std::fs::write(&path, b"RKSIMKV2\x01\0\0\0\0\0\0\0x").unwrap();
        let header = |p: &Path| read_tokens(p, 1, CacheCheck::Header, "m");
        assert!(header(&path).unwrap_err().contains("magic"));
        std::fs::write(&path, b"RKSIM").unwrap();
        assert!(header(&path).is_err());
        std::fs::write(&path, b"RKSIMKV1\x02\0\0\0\0\0\0\0x").unwrap();
        assert!(header(&path).is_err());
        assert!(header(Path::new("/nonexistent/cache")).is_err());
        assert!(write(Path::new("/nonexistent/dir/cache"), 1, 1, "m").is_err());
    }
}
