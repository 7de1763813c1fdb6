//! What the parent and the worker say to each other, and how it is framed:
//! each message is a little-endian `u32` length followed by that many bytes
//! of JSON.
//!
//! Every request that expects an answer carries an id chosen by the parent;
//! the worker's replies carry it back. A generation answers `Accepted` (or
//! `Failed`), then any number of `Text`, then one `Finished` or `Failed`. A
//! call answers one `Done` or `Failed`.

use crate::cache::CacheInfo;
use crate::config::{GenerateRequest, OpenConfig};
use crate::error::Error;
use crate::outcome::{Output, Stats, Tensor};
use crate::runtime::Family;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// Largest message either side accepts (a prompt is at most 16 MiB; JSON
/// escaping can grow it several times).
pub const MAX_MESSAGE: usize = 128 << 20;

/// Parent to worker.
#[derive(Serialize, Deserialize, Debug)]
pub enum Request {
    /// Open the model (always the first message, exactly once). The config
    /// is in-process, with everything the environment decides resolved.
    Open { id: u64, config: Box<OpenConfig> },
    /// Start a generation.
    Generate { id: u64, request: GenerateRequest },
    /// Abort one generation (or the run of a `CacheSave` call).
    Abort { id: u64 },
    /// Abort everything of the model.
    AbortAll,
    /// Any other method of the model.
    Call { id: u64, call: Call },
    /// Close the model and exit.
    Close,
}

/// The model methods that answer with one value.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Call {
    ClearHistory {
        keep_system_prompt: bool,
    },
    KvCacheTokens,
    SetChatTemplate {
        system: String,
        prefix: String,
        postfix: String,
    },
    SetFunctionTools {
        system: String,
        tools_json: String,
        tool_response: String,
    },
    LoadLora {
        path: PathBuf,
        name: String,
        scale: f32,
    },
    CacheSave {
        request: GenerateRequest,
        path: PathBuf,
    },
    /// A run that returns floats (hidden states or logits).
    Output {
        request: GenerateRequest,
        output: Output,
    },
    CacheLoad {
        path: PathBuf,
    },
    CacheRelease,
}

/// Worker to parent.
#[derive(Serialize, Deserialize, Debug)]
pub enum Reply {
    /// The model is open.
    Opened {
        id: u64,
        family: Family,
        runtime_path: String,
        /// The runtime's version as it printed it, if it did.
        #[serde(default)]
        runtime_version: Option<String>,
    },
    /// The generation is queued on the runtime.
    Accepted { id: u64 },
    /// Complete UTF-8 text of a generation, with the tokens the worker's
    /// stream counted up to and including it (`Stats::tokens` so far).
    Text {
        id: u64,
        text: String,
        #[serde(default)]
        tokens: u32,
    },
    /// The generation ended.
    Finished { id: u64, stats: Stats },
    /// The request failed (open, generation or call).
    Failed { id: u64, error: Error },
    /// A call's result.
    Done { id: u64, value: Value },
    /// The worker made progress that no other reply shows: a runtime
    /// callback whose text is not forwarded (after an abort, past a token
    /// limit), or rkl's own work outside the runtime. `work` counts such
    /// progress since the worker started; a repeated count is none.
    Progress { work: u64 },
}

impl Reply {
    /// The id of the request this answers.
    pub fn id(&self) -> u64 {
        match self {
            Reply::Opened { id, .. }
            | Reply::Accepted { id }
            | Reply::Text { id, .. }
            | Reply::Finished { id, .. }
            | Reply::Failed { id, .. }
            | Reply::Done { id, .. } => *id,
            Reply::Progress { .. } => 0,
        }
    }

    /// Whether this is the last reply to its request.
    pub fn is_last(&self) -> bool {
        !matches!(self, Reply::Accepted { .. } | Reply::Text { .. } | Reply::Progress { .. })
    }
}

/// The value of a successful call.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Value {
    Unit,
    Tokens(u32),
    Cache(Box<CacheInfo>),
    Tensor(Box<(Tensor, Stats)>),
}

/// Frames `message` (length prefix + JSON) into one buffer, so it can go
/// out in one write.
pub fn encode<T: Serialize>(message: &T) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, message).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let len = buf.len() - 4;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("message of {len} bytes is too large")));
    }
    buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(buf)
}

/// Writes one framed message.
pub fn write_message<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    out.write_all(&encode(message)?)?;
    out.flush()
}

/// Reads one framed message; `None` at a clean end of input (between
/// messages).
pub fn read_message<T: DeserializeOwned>(input: &mut impl Read) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("message of {len} bytes is too large")));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body)?;
    serde_json::from_slice(&body).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FinishReason;

    #[test]
    fn messages_survive_the_round_trip() {
        let mut wire = Vec::new();
        write_message(&mut wire, &Reply::Text { id: 7, text: "héllo \"wörld\" 🚀\n".into(), tokens: 2 }).unwrap();
        let stats = Stats { tokens: 3, finish: FinishReason::Stopped, ..Stats::default() };
        write_message(&mut wire, &Reply::Finished { id: 7, stats }).unwrap();
        let mut input = wire.as_slice();
        match read_message::<Reply>(&mut input).unwrap().unwrap() {
            Reply::Text { id: 7, text, tokens: 2 } => assert_eq!(text, "héllo \"wörld\" 🚀\n"),
            other => panic!("{other:?}"),
        }
        match read_message::<Reply>(&mut input).unwrap().unwrap() {
            Reply::Finished { id: 7, stats: got } => assert_eq!(got, stats),
            other => panic!("{other:?}"),
        }
        assert!(read_message::<Reply>(&mut input).unwrap().is_none(), "clean end");
    }

    #[test]
    fn torn_and_oversized_frames_are_errors() {
        let wire = encode(&Request::AbortAll).unwrap();
        let mut torn = &wire[..wire.len() - 1];
        assert!(read_message::<Request>(&mut torn).is_err());
        let mut short_len = &wire[..2];
        assert!(read_message::<Request>(&mut short_len).is_err());
        let huge = ((MAX_MESSAGE + 1) as u32).to_le_bytes();
        assert!(read_message::<Request>(&mut &huge[..]).is_err());
    }
}
