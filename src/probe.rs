//! [`probe_runtime`]: load the runtime and tell its release without a model,
//! for tools such as `rkl info`.

use crate::config::OpenConfig;
use crate::error::Result;
use crate::runtime::{Family, Runtime};
use std::path::PathBuf;

/// What loading a runtime found out, before any model is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeProbe {
    /// Where the runtime was loaded from (as configured or searched).
    pub path: String,
    /// Its release family, detected (or as configured where detection is
    /// not certain).
    pub family: Family,
    /// Whether a run takes its own sampling settings (1.3).
    pub samples_per_run: bool,
    /// Whether a run takes its own token limit (1.3; on 1.2 rkl enforces it
    /// with an abort).
    pub limits_tokens_per_run: bool,
}

/// Loads the runtime (`runtime_path`, else `RKL_RUNTIME`, else the loader's
/// search) and detects its release, as [`Model::open`](crate::Model::open)
/// would, without opening a model. The runtime stays loaded in this process.
/// The runtime's version string is only known once a model is opened
/// ([`Model::runtime_version`](crate::Model::runtime_version)).
pub fn probe_runtime(runtime_path: Option<PathBuf>, abi: Option<Family>) -> Result<RuntimeProbe> {
    let config = OpenConfig { runtime_path, runtime_abi: abi, ..OpenConfig::default() };
    let path = config.resolved_runtime_path()?;
    let runtime = Runtime::load(&path, config.resolved_abi()?)?;
    Ok(RuntimeProbe {
        path: runtime.path().to_string(),
        family: runtime.family(),
        samples_per_run: runtime.samples_per_run(),
        limits_tokens_per_run: runtime.limits_tokens_per_run(),
    })
}
