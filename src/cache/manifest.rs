//! The manifest: a small JSON file, at the cache's own path, that says what a
//! prompt-cache payload is and what it belongs to.

use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};

/// The manifest format this library writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The key every manifest starts with; its value is the format version.
pub const MARKER: &str = "rkl_prompt_cache";

/// Everything recorded about one prompt cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version (always serialised first, as the marker key).
    #[serde(rename = "rkl_prompt_cache")]
    pub format: u32,
    /// Version of rkl that wrote it.
    pub library_version: String,
    /// The runtime release family ("1.2", "1.3").
    pub runtime_family: String,
    /// The runtime's own version string, when it printed one.
    pub runtime_version: Option<String>,
    /// Which model the KV state belongs to.
    pub model: ModelIdentity,
    /// The prompt whose KV state this is.
    pub prompt: PromptRecord,
    /// Settings that change the KV state for the same prompt.
    pub settings: KvSettings,
    /// The runtime's payload file.
    pub payload: PayloadRecord,
    /// Seconds since the Unix epoch when it was written.
    pub created_unix: u64,
}

/// A model file's identity: the fingerprint decides, the rest informs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelIdentity {
    /// Path the model was opened from.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: u64,
    /// Hex xxh3-128 of the size and sampled blocks of the file.
    pub fingerprint: String,
}

/// The cached prompt, by hash (its text is not stored, only a preview).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptRecord {
    /// Hex xxh3-128 of the prompt's UTF-8 bytes.
    pub hash: String,
    /// Length in bytes.
    pub bytes: u64,
    /// The first characters, for people listing caches.
    pub preview: String,
}

/// Settings under which the KV state was computed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvSettings {
    /// The chat template set on the model (system, prefix, postfix), if any.
    pub chat_template: Option<[String; 3]>,
    /// "user" or "tool".
    pub role: String,
    /// Thinking mode.
    pub enable_thinking: bool,
    /// The model's context window, when set at open.
    pub max_context_len: Option<i32>,
}

/// The payload file, beside the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadRecord {
    /// File name in the manifest's directory (no directory part).
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex xxh3-128 of the contents.
    pub checksum: String,
}

/// Largest manifest read; real ones are well under a kilobyte or two.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

impl Manifest {
    /// Serialises to pretty JSON with the marker key first.
    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).expect("a manifest always serialises");
        text.push(b'\n');
        text
    }

    /// Reads and parses the manifest at `path`, checking its format version.
    pub fn read(path: &Path) -> Result<Manifest> {
        Manifest::read_with_metadata(path).map(|(manifest, _)| manifest)
    }

    /// [`Manifest::read`], with the metadata of the file it was read from
    /// (through the descriptor: the very file, whatever replaces the path).
    pub fn read_with_metadata(path: &Path) -> Result<(Manifest, Metadata)> {
        let shown = path.display();
        let file = super::files::open_regular_file(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::new(ErrorKind::CacheNotFound, format!("no prompt cache at '{shown}'"))
            }
            std::io::ErrorKind::InvalidInput => {
                Error::new(ErrorKind::CacheInvalid, format!("prompt cache '{shown}' is not a regular file"))
            }
            _ => Error::from_os(ErrorKind::Io, format!("cannot read prompt cache '{shown}': {e}"), &e),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| Error::from_os(ErrorKind::Io, format!("cannot read prompt cache '{shown}': {e}"), &e))?;
        Ok((Manifest::read_open(file, path)?, meta))
    }

    /// Reads and parses a manifest from `file`, opened from `path`.
    pub fn read_open(file: File, path: &Path) -> Result<Manifest> {
        use std::io::Read;
        let shown = path.display();
        let mut bytes = Vec::new();
        file.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot read prompt cache '{shown}': {e}")))?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(Error::new(
                ErrorKind::CacheInvalid,
                format!("'{shown}' is too large to be a prompt-cache manifest"),
            ));
        }
        Manifest::parse(&bytes).map_err(|e| Error::new(e.kind(), format!("prompt cache '{shown}': {}", e.message())))
    }

    /// Parses manifest bytes: first the format version alone, so that a newer
    /// format is reported as such rather than as garbage.
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::new(ErrorKind::CacheInvalid, format!("the manifest is not valid JSON ({e})")))?;
        let format = value.get(MARKER).and_then(|v| v.as_u64()).ok_or_else(|| {
            Error::new(ErrorKind::CacheInvalid, format!("the manifest has no '{MARKER}' format version"))
        })?;
        if format != FORMAT_VERSION as u64 {
            return Err(Error::new(
                ErrorKind::CacheVersion,
                format!("manifest format {format} is not known to this rkl (it reads format {FORMAT_VERSION})"),
            ));
        }
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| Error::new(ErrorKind::CacheInvalid, format!("the manifest is malformed ({e})")))?;
        manifest.check_payload_name()?;
        Ok(manifest)
    }

    /// The payload of the manifest at `manifest_path`: beside it, under a
    /// name rkl derives from the manifest's own (`<name>.<16 hex>.kv`). A
    /// manifest naming any other file is invalid, and nothing it names is
    /// ever read or deleted.
    pub fn payload_path(&self, manifest_path: &Path) -> Result<PathBuf> {
        let name = manifest_path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !super::files::is_payload_of(name, &self.payload.file) {
            return Err(Error::new(
                ErrorKind::CacheInvalid,
                format!(
                    "the manifest '{}' names payload '{}', which is not a payload rkl made for it ('{name}.<16 hex>.kv')",
                    manifest_path.display(),
                    self.payload.file
                ),
            ));
        }
        Ok(super::files::dir_of(manifest_path).join(&self.payload.file))
    }

    /// The payload must be a plain file name beside the manifest: a manifest
    /// must never point the runtime at an arbitrary file.
    fn check_payload_name(&self) -> Result<()> {
        let name = &self.payload.file;
        let plain = !name.is_empty() && !name.contains('/') && name != "." && name != ".." && !name.contains('\0');
        if !plain {
            return Err(Error::new(
                ErrorKind::CacheInvalid,
                format!("the manifest names an invalid payload file '{name}'"),
            ));
        }
        Ok(())
    }
}

/// Whether the start of a file looks like a manifest (for listing directories).
pub fn looks_like_manifest(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start();
    trimmed.starts_with('{') && trimmed[1..].trim_start().starts_with(&format!("\"{MARKER}\""))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            library_version: "0.1.0".into(),
            runtime_family: "1.3".into(),
            runtime_version: None,
            model: ModelIdentity { path: "/m.rkllm".into(), size: 10, mtime_ns: 1, fingerprint: "ab".into() },
            prompt: PromptRecord { hash: "cd".into(), bytes: 5, preview: "hello".into() },
            settings: KvSettings {
                chat_template: None,
                role: "user".into(),
                enable_thinking: false,
                max_context_len: Some(4096),
            },
            payload: PayloadRecord { file: "c.json.0123456789abcdef.kv".into(), size: 3, checksum: "ef".into() },
            created_unix: 1_700_000_000,
        }
    }

    #[test]
    fn round_trips_and_starts_with_the_marker() {
        let m = sample();
        let json = m.to_json();
        assert!(looks_like_manifest(&json), "{}", String::from_utf8_lossy(&json));
        assert_eq!(Manifest::parse(&json).unwrap(), m);
    }

    #[test]
    fn each_problem_has_its_kind() {
        assert_eq!(Manifest::parse(b"not json").unwrap_err().kind(), ErrorKind::CacheInvalid);
        assert_eq!(Manifest::parse(b"{}").unwrap_err().kind(), ErrorKind::CacheInvalid);
        assert_eq!(Manifest::parse(br#"{"rkl_prompt_cache": 99}"#).unwrap_err().kind(), ErrorKind::CacheVersion);
        let mut m = sample();
        m.payload.file = "../etc/passwd".into();
        assert_eq!(Manifest::parse(&m.to_json()).unwrap_err().kind(), ErrorKind::CacheInvalid);
    }
}
