//! Injected faults: `fault = KIND@POINT` lines of a model file.

use std::ffi::c_int;
use std::time::Duration;

/// What goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Raise SIGSEGV.
    Segv,
    /// Call `abort()`.
    Abort,
    /// Sleep forever, no callbacks.
    Hang,
    /// Return -1 (in a run: after an ERROR callback).
    Error,
    /// Init only: return 0 with a handle on which every call but destroy fails.
    Broken,
}

/// Where it goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    Init,
    Prefill,
    /// Before the N-th token (0-based, WAITING callbacks included).
    Token(u64),
    CacheSave,
    CacheLoad,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub point: FaultPoint,
}

impl Fault {
    /// Parses `KIND@POINT`.
    pub fn parse(text: &str) -> Result<Fault, String> {
        let (kind, point) = text.split_once('@').ok_or_else(|| format!("fault {text:?} is not KIND@POINT"))?;
        let kind = match kind.trim() {
            "segv" => FaultKind::Segv,
            "abort" => FaultKind::Abort,
            "hang" => FaultKind::Hang,
            "error" => FaultKind::Error,
            "broken" => FaultKind::Broken,
            other => return Err(format!("unknown fault kind {other:?}")),
        };
        let point = match point.trim() {
            "init" => FaultPoint::Init,
            "prefill" => FaultPoint::Prefill,
            "cache_save" => FaultPoint::CacheSave,
            "cache_load" => FaultPoint::CacheLoad,
            other => match other.strip_prefix("token:").map(|n| n.trim().parse::<u64>()) {
                Some(Ok(n)) => FaultPoint::Token(n),
                _ => return Err(format!("unknown fault point {other:?}")),
            },
        };
        if kind == FaultKind::Broken && point != FaultPoint::Init {
            return Err("fault kind 'broken' exists only at 'init'".into());
        }
        Ok(Fault { kind, point })
    }
}

/// The first fault listed for `point`, if any.
pub fn at(faults: &[Fault], point: FaultPoint) -> Option<FaultKind> {
    faults.iter().find(|f| f.point == point).map(|f| f.kind)
}

extern "C" {
    // From the C library every Rust program on Linux links.
    fn raise(sig: c_int) -> c_int;
}

/// SIGSEGV on Linux (x86_64 and aarch64 alike).
const SIGSEGV: c_int = 11;

/// Carries out the kinds that never return: segv, abort, hang.
/// Returns for `Error` and `Broken`, which the caller reports itself.
pub fn strike(kind: FaultKind, point: FaultPoint) {
    match kind {
        FaultKind::Segv => {
            eprintln!("E rkllm-sim: injected fault: SIGSEGV at {point:?}");
            // SAFETY: raise only delivers a signal to this thread; a handler
            // that returns lets us fall through to abort below.
            unsafe { raise(SIGSEGV) };
            std::process::abort();
        }
        FaultKind::Abort => {
            eprintln!("E rkllm-sim: injected fault: abort() at {point:?}");
            std::process::abort();
        }
        FaultKind::Hang => {
            eprintln!("E rkllm-sim: injected fault: hang at {point:?}");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        FaultKind::Error | FaultKind::Broken => {
            eprintln!("E rkllm-sim: injected fault: {kind:?} at {point:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kinds_and_points() {
        assert_eq!(Fault::parse("error@token:3"), Ok(Fault { kind: FaultKind::Error, point: FaultPoint::Token(3) }));
        assert_eq!(Fault::parse(" broken @ init "), Ok(Fault { kind: FaultKind::Broken, point: FaultPoint::Init }));
        assert_eq!(Fault::parse("segv@cache_save"), Ok(Fault { kind: FaultKind::Segv, point: FaultPoint::CacheSave }));
        assert!(Fault::parse("broken@prefill").is_err());
        assert!(Fault::parse("error").is_err());
        assert!(Fault::parse("error@token:x").is_err());
        assert!(Fault::parse("melt@init").is_err());
    }
}
